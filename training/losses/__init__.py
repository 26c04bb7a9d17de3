"""Distillation losses: LPIPS, ArcFace identity (ONNX run in torch) and the input-aware region loss."""

from .arcface import ARCFACE_TEMPLATE, ArcFaceEmbedder, align_faces, face_landmarks5, similarity_to_template
from .lpips import LPIPS, LPIPSWeightsError
from .onnx_torch import SUPPORTED_OPS, OnnxModule
from .region import REGIONS, RegionLoss, RegionLossConfig, build_region_loss, crop_regions, flatten_video

__all__ = [
    "ARCFACE_TEMPLATE",
    "LPIPS",
    "REGIONS",
    "SUPPORTED_OPS",
    "ArcFaceEmbedder",
    "LPIPSWeightsError",
    "OnnxModule",
    "RegionLoss",
    "RegionLossConfig",
    "align_faces",
    "build_region_loss",
    "crop_regions",
    "face_landmarks5",
    "flatten_video",
    "similarity_to_template",
]
