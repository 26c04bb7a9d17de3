"""Pose detection from images and videos: DWPose with onnxruntime/TorchScript runtimes (not yet built)."""
