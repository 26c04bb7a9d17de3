"""Sampling stage: reference image + poses -> video frames with the IASA model."""

from __future__ import annotations

import logging

from . import comfy_bridge as bridge
from .nodes_pose import POSE_TOOLTIP

log = logging.getLogger(__name__)

# What the library's option checks call each GenerateOptions field on this node.
INPUT_NAMES = {"overlap_latents": "overlap", "size_fix": "scale reference_image down (e.g. with Upscale Image By) "
                                                        "so it has at most 1280x720 pixels"}
# The library's own advice names CLI flags; inside ComfyUI the user fixes it with node inputs.
FIT_FIX = ("Make the poses from this image (connect it to IASA Motion's reference_image or IASA DWPose's image) "
           "or crop reference_image to the poses' aspect ratio.")


class IASASampler:
    """Animates the person in the reference image along the poses (few-step student, sparse attention)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("IASA_MODEL", {"tooltip": "The model from IASA Model Loader."}),
                "reference_image": ("IMAGE", {
                    "tooltip": "Photo of the person (the first image of a batch is used). The video gets its size "
                               "rounded down to multiples of 16; the poses' canvas must have its aspect ratio."}),
                "poses": ("POSE_KEYPOINT", {"tooltip": POSE_TOOLTIP + " One video frame per pose; sets the fps."}),
                "sampler": (["auto", "student", "teacher"], {
                    "default": "auto",
                    "tooltip": "auto: the model's own kind; student: few steps (4); teacher: Euler with CFG."}),
                # 0 = the model's own value: a fixed number here showed 30 for a student that runs 4.
                "steps": ("INT", {
                    "default": 0, "min": 0, "max": 1000, "step": 1,
                    "tooltip": "Override of the teacher sampler's Euler steps; 0 = the model's own (stored with "
                               "it, else 30). The few-step student (e.g. the default 'embedded') ignores it: its "
                               "4 steps are part of the model."}),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                    "tooltip": "Seed of the noise."}),
                "backend": (["auto", "dense", "gather", "flex", "flashinfer"], {
                    "default": "auto",
                    "tooltip": "Sparse attention kernel: auto = FlashInfer on CUDA when installed, else gather; "
                               "dense = masked reference (slow)."}),
                "sparse": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Input-aware sparse self-attention (off: dense attention, slower)."}),
            },
            "optional": {
                "plan": ("IASA_PLAN", {
                    "tooltip": "Settings from IASA Sparse Plan (top_k, block_size, mode) override the model's; "
                               "each window gets its own plan from the poses."}),
                "guidance": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 30.0, "step": 0.1,
                    "tooltip": "Override of the teacher sampler's CFG scale; 0 = the model's own (stored with "
                               "it, else 5; 1 = no guidance). The few-step student (e.g. the default "
                               "'embedded') ignores it."}),
                "window_frames": ("INT", {
                    "default": 81, "min": 5, "max": 1001, "step": 1,
                    "tooltip": "Frames per window of long videos, 4n+1 (81 = Wan2.1's length)."}),
                "overlap": ("INT", {
                    "default": 4, "min": 1, "max": 64, "step": 1,
                    "tooltip": "Latent frames shared by consecutive windows (blended, so there are no seams)."}),
                "start_from_image": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "The first frame lands on the reference image itself (through the VAE), so the "
                               "video starts from the photo; off lets the model draw the first frame too."}),
                # appended last: saved workflows fill their widget values in order
                "face_restore": (["auto", "on", "off"], {  # iasa_core.restoration.RESTORE_CHOICES
                    "default": "auto",
                    "tooltip": "Warp the reference photo's face onto every frame: the head follows the "
                               "face points and the mouth opens with the lips'. auto = the model's own "
                               "setting (on for the embedded models, whose small VAE loses a face's "
                               "detail); off = the model's frames untouched."}),
                "background_restore": (["auto", "on", "off"], {
                    "default": "auto",
                    "tooltip": "Put the reference photo's own background back wherever the person is "
                               "not (for a still camera). auto = the model's own setting (on for the "
                               "embedded models, which redraw it mottled); off = the model's frames "
                               "untouched."}),
                "body_restore": (["auto", "on", "off"], {
                    "default": "auto",
                    "tooltip": "Move the reference photo's head (hair and outline), torso, arms and hands "
                               "onto every frame's pose (the head and each hand by their points, the torso by "
                               "shoulders and hips, each arm bone rigidly). auto = the model's own setting (on for the embedded models, which "
                               "smear the body); off = the model's frames untouched."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("The video frames [frames, height, width, 3] in 0..1.", "Frame rate of the video (the poses').")
    FUNCTION = "sample"
    CATEGORY = "IASA/sampling"
    DESCRIPTION = ("Generates the talking video: the reference person moves along the poses. One frame per pose; "
                   "long pose sequences are sampled in overlapping windows. Cancel stops between steps.")

    @classmethod
    def VALIDATE_INPUTS(cls, backend="auto"):
        # Checked when the prompt is queued: the sampler's own check came only after the nodes before it had
        # run (7 s on a CPU before FlashInfer was refused). The model's device is not known here, so this
        # refuses a kernel that cannot run on ComfyUI's device; the sampler still checks the model's.
        from iasa_core.sparse.attention import available_backends

        choices = cls.INPUT_TYPES()["required"]["backend"][0]
        if backend not in choices:  # naming backend here turns off ComfyUI's own list check for it
            return f"backend {backend!r} is not one of {', '.join(choices)}"
        why = available_backends(bridge.torch_device()).get(backend, "")
        if why:
            return f"backend {backend} cannot run on {bridge.torch_device()}: {why}; choose auto or gather"
        return True

    def sample(self, model, reference_image, poses, sampler="auto", steps=0, seed=0, backend="auto", sparse=True,
               plan=None, guidance=0.0, window_frames=81, overlap=4, start_from_image=True,
               face_restore="auto", background_restore="auto", body_restore="auto"):
        import torch

        from iasa_core import validate
        from iasa_core.media import load_image
        from iasa_core.node_support import apply_plan_settings, sequence_from_pose_keypoint
        from iasa_core.pipeline import GenerateOptions, fit_poses, generate_video, video_size
        from iasa_core.restoration import restore_setting

        if not isinstance(model, dict) or "system" not in model:
            raise ValueError("model must be an IASA_MODEL from IASA Model Loader")
        # API prompts reach here unchecked by the widgets' min/max (a NaN passes every comparison).
        steps = validate.whole(steps, "steps", low=0)
        guidance = validate.finite(guidance, "guidance", low=0.0)
        options = GenerateOptions(sampler=sampler, steps=steps or None,  # 0: the model's own value
                                  guidance=guidance or None,
                                  seed=validate.seed(seed, "seed"), sparse=bool(sparse), backend=backend,
                                  window_frames=validate.whole(window_frames, "window_frames", low=5),
                                  overlap_latents=validate.whole(overlap, "overlap", low=1),
                                  anchor_first=bool(start_from_image),
                                  face_restore=restore_setting(face_restore, "face_restore"),
                                  background_restore=restore_setting(background_restore, "background_restore"),
                                  body_restore=restore_setting(body_restore, "body_restore"))
        validate.generate_options(options, INPUT_NAMES)
        image = load_image(reference_image, name="reference_image")
        validate.reference_image(image.shape, "reference_image")
        validate.video_size(video_size(image.shape[:2], None), "reference_image", fix=INPUT_NAMES["size_fix"])
        seq = sequence_from_pose_keypoint(poses, name="poses")
        validate.poses_with_person(seq.keypoints, "poses")
        fit_poses(seq, image.shape[:2], image.shape[:2], fix=FIT_FIX)  # refused here, before the model runs
        system = model["system"]
        if plan is not None:
            if not isinstance(plan, dict):
                raise ValueError("plan must be an IASA_PLAN from IASA Sparse Plan")
            system, options = apply_plan_settings(system, options, plan.get("settings"))
        bridge.throw_if_interrupted()
        # Two bars in turn: conditioning (seconds on a CPU before the first step), then the sampler's steps.
        result = generate_video(system, image, seq, options, callback=bridge.progress_callback(),
                                cancel=bridge.cancel_check, condition_callback=bridge.progress_callback())
        for note in result.restore_notes:
            log.info("IASA Sampler: %s", note)
        frames = torch.from_numpy(result.frames).float() / 255.0
        return (frames, float(result.fps))


NODE_CLASS_MAPPINGS = {"IASASampler": IASASampler}
NODE_DISPLAY_NAME_MAPPINGS = {"IASASampler": "IASA Sampler"}
