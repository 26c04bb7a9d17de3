"""Sparse stage: the input-aware sparse attention plan of a pose sequence, its picture and density."""

from __future__ import annotations

from .nodes_pose import POSE_TOOLTIP


class IASASparsePlan:
    """Builds the IASA block-sparse attention plan from poses (for a look, and to set the sampler's sparsity)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "poses": ("POSE_KEYPOINT", {"tooltip": POSE_TOOLTIP}),
                "width": ("INT", {
                    "default": 512, "min": 16, "max": 4096, "step": 16,
                    "tooltip": "Video width in pixels (a multiple of 16); the poses' canvas must have the same "
                               "aspect ratio."}),
                "height": ("INT", {
                    "default": 512, "min": 16, "max": 4096, "step": 16,
                    "tooltip": "Video height in pixels (a multiple of 16)."}),
                "frames": ("INT", {
                    "default": 81, "min": 0, "max": 100001, "step": 1,
                    "tooltip": "Video frames the plan covers, 4n+1 (81 = one sampling window); 0 or more than "
                               "there are poses = all poses, padded to 4n+1 as the sampler does."}),
                "top_k": ("INT", {
                    "default": 2, "min": 1, "max": 20, "step": 1,
                    "tooltip": "How many of the most pose-similar past latent frames each latent frame attends to."}),
                "block_size": ("INT", {
                    "default": 128, "min": 16, "max": 256, "step": 16,
                    "tooltip": "Kernel block size in tokens (the paper uses 128)."}),
                "mode": (["exact", "pooled"], {
                    "default": "exact",
                    "tooltip": "exact: keeps the token rule inside partly allowed blocks; pooled: computes a block "
                               "whole when any pair in it is allowed (the paper's pooling, faster, approximate)."}),
            },
        }

    RETURN_TYPES = ("IASA_PLAN", "IMAGE", "FLOAT")
    RETURN_NAMES = ("plan", "preview", "density")
    OUTPUT_TOOLTIPS = (
        "The plan and its settings; connect it to IASA Sampler to sample with these settings.",
        "Block pattern (grey: within a frame; coloured: across frames by region) and token region maps.",
        "Fraction of query-key blocks computed (1.0 = dense attention).",
    )
    FUNCTION = "build"
    CATEGORY = "IASA/sparse"
    DESCRIPTION = ("Input-aware sparse attention: each latent frame attends to itself and its top-K most "
                   "pose-similar past frames, across frames only between matching body regions (face, hands, "
                   "arms, body). Shows the pattern and how much attention is left to compute.")

    def build(self, poses, width=512, height=512, frames=81, top_k=2, block_size=128, mode="exact"):
        import numpy as np

        from iasa_core.media import image_to_comfy
        from iasa_core.node_support import plan_for_poses, sequence_from_pose_keypoint
        from iasa_core.sparse.preview import plan_preview

        seq = sequence_from_pose_keypoint(poses, name="poses")
        plan = plan_for_poses(seq, int(height), int(width), int(frames), top_k=int(top_k),
                              block_size=int(block_size), mode=mode)
        preview = image_to_comfy(np.asarray(plan_preview(plan).convert("RGB")))
        settings = {"top_k": int(top_k), "block_size": int(block_size), "mode": mode}
        return ({"settings": settings, "plan": plan, "size": (int(height), int(width))}, preview,
                float(plan.density))


NODE_CLASS_MAPPINGS = {"IASASparsePlan": IASASparsePlan}
NODE_DISPLAY_NAME_MAPPINGS = {"IASASparsePlan": "IASA Sparse Plan"}
