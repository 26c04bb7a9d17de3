"""Patch stage: IASA sparse self-attention on a native ComfyUI Wan MODEL (UNETLoader, LoRAs, ...)."""

from __future__ import annotations

from .nodes_pose import POSE_TOOLTIP
from .nodes_sparse import IASASparsePlan

# The plan options read as on IASA Sparse Plan (same widgets, ranges and tooltips).
_PLAN_INPUTS = IASASparsePlan.INPUT_TYPES()["required"]

_BACKENDS = ["auto", "dense", "gather", "flex", "flashinfer"]  # iasa_core.sparse.native_patch.BACKEND_CHOICES


class IASAPatchModel:
    """Returns a clone of a native Wan MODEL whose self-attention follows the IASA plan of the poses."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {
                    "tooltip": "A native ComfyUI Wan model (UNETLoader / Load Diffusion Model, after any LoRA). "
                               "It is not changed: the output is a patched clone."}),
                "poses": ("POSE_KEYPOINT", {
                    "tooltip": POSE_TOOLTIP + " One pose per video frame of the video being sampled (the same "
                               "poses as the pose video); more frames are fine, the first ones are used."}),
                "top_k": _PLAN_INPUTS["top_k"],
                "regions": ("STRING", {
                    "default": "face,hands,arms,body",
                    "tooltip": "Body regions that attend across frames, comma separated (face, hands, arms, body); "
                               "tokens elsewhere attend only within their own frame."}),
                "sink_first": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Every frame also sees the whole first latent frame (the start image)."}),
                "mode": _PLAN_INPUTS["mode"],
                "block_size": _PLAN_INPUTS["block_size"],
                "backend": (_BACKENDS, {
                    "default": "auto",
                    "tooltip": "auto: FlashInfer on CUDA when installed, else the exact PyTorch gather; dense: "
                               "SDPA with the token mask (reference, slow)."}),
                "dense_steps": ("INT", {
                    "default": 0, "min": 0, "max": 1000, "step": 1,
                    "tooltip": "The first N sampling steps of each sampler run use full (dense) attention."}),
                "dense_first_blocks": ("INT", {
                    "default": 0, "min": 0, "max": 100, "step": 1,
                    "tooltip": "The first N transformer blocks use full (dense) attention."}),
                "dense_last_blocks": ("INT", {
                    "default": 0, "min": 0, "max": 100, "step": 1,
                    "tooltip": "The last N transformer blocks use full (dense) attention."}),
            },
        }

    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("A clone of the model with IASA sparse self-attention; cross-attention is unchanged.",)
    FUNCTION = "patch"
    CATEGORY = "IASA/sparse"
    DESCRIPTION = ("Input-aware sparse attention for ComfyUI's own Wan models: self-attention of each latent frame "
                   "is limited to itself and its top-K most pose-similar past frames, across frames only between "
                   "matching body regions. Any attention override already on the model (e.g. SageAttention) "
                   "still serves cross-attention and dense parts. Layouts it cannot map stay dense, with a "
                   "warning in the console.")

    def patch(self, model, poses, top_k=2, regions="face,hands,arms,body", sink_first=False, mode="exact",
              block_size=128, backend="auto", dense_steps=0, dense_first_blocks=0, dense_last_blocks=0):
        from iasa_core.node_support import sequence_from_pose_keypoint
        from iasa_core.sparse.native_patch import PatchOptions, install
        from iasa_core.sparse.plan import PlanConfig

        seq = sequence_from_pose_keypoint(poses, name="poses")
        names = tuple(r.strip() for r in str(regions).split(",") if r.strip())
        options = PatchOptions(
            plan=PlanConfig(top_k=int(top_k), block_size=int(block_size), mode=mode, regions=names,
                            sink_first=bool(sink_first)),
            backend=backend, dense_steps=int(dense_steps), dense_first_blocks=int(dense_first_blocks),
            dense_last_blocks=int(dense_last_blocks))
        patched = model.clone()
        install(patched, seq, options)
        return (patched,)


NODE_CLASS_MAPPINGS = {"IASAPatchModel": IASAPatchModel}
NODE_DISPLAY_NAME_MAPPINGS = {"IASAPatchModel": "IASA Patch Model (sparse attention)"}
