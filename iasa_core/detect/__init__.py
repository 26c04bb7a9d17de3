"""Pose detection from images and videos: DWPose (YOLOX + WholeBody) on onnxruntime or TorchScript."""

from .dwpose import (
    DET_ONNX,
    DET_TORCHSCRIPT,
    HF_REPO,
    POSE_ONNX,
    POSE_TORCHSCRIPT,
    DWPoseDetector,
    Person,
    choose_person,
    find_dwpose_files,
)
from .filter import passes_training_filter, pose_quality, training_filter
from .runtime import OnnxRuntime, Runtime, TorchScriptRuntime, load_runtime

__all__ = [
    "DET_ONNX", "DET_TORCHSCRIPT", "HF_REPO", "POSE_ONNX", "POSE_TORCHSCRIPT",
    "DWPoseDetector", "Person", "choose_person", "find_dwpose_files",
    "passes_training_filter", "pose_quality", "training_filter",
    "OnnxRuntime", "Runtime", "TorchScriptRuntime", "load_runtime",
]
