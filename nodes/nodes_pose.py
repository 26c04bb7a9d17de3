"""Pose stage: POSE_KEYPOINT from JSON files or DWPose, and skeleton images of poses."""

from __future__ import annotations

from . import comfy_bridge as bridge
from .nodes_audio import file_hash

POSE_TOOLTIP = ("Poses as POSE_KEYPOINT (one OpenPose-style dict per video frame, as from IASA Motion, "
                "IASA DWPose or comfyui_controlnet_aux).")


class IASALoadPoses:
    """A POSE_KEYPOINT JSON file from the input folder."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pose_file": (bridge.list_input_files((".json",)), {
                    # No upload widget: the frontend's upload buttons take images, video or audio only.
                    "tooltip": "POSE_KEYPOINT JSON in ComfyUI's input folder (written by `iasa motion` / "
                               "`iasa pose`, or saved by comfyui_controlnet_aux's SavePoseKpsAsJsonFile). This node has no upload "
                               "button: copy the .json into ComfyUI/input and press R (refresh), or connect a "
                               "pose node's POSE_KEYPOINT output straight to the node that needs it."}),
                "fps": ("FLOAT", {
                    "default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001,
                    "tooltip": "Frame rate of the poses when the file does not store one."}),
            },
        }

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("poses",)
    OUTPUT_TOOLTIPS = ("The poses (pixels, one person, with an 'fps' key per frame).",)
    FUNCTION = "load"
    CATEGORY = "IASA/pose"
    DESCRIPTION = ("Loads a pose sequence saved as POSE_KEYPOINT JSON (a list of frames, {'frames': [...]}, or one "
                   "frame). Normalised or pixel coordinates; the first person of each frame is kept.")

    def load(self, pose_file, fps=25.0):
        from iasa_core.node_support import load_poses_file, to_pose_keypoint

        if not pose_file:
            raise ValueError(f"No pose file: put a POSE_KEYPOINT .json in ComfyUI's input folder "
                             f"({bridge.input_directory()}) and choose it.")
        return (to_pose_keypoint(load_poses_file(bridge.annotated_filepath(pose_file), float(fps))),)

    @classmethod
    def IS_CHANGED(cls, pose_file=None, **kwargs):
        return file_hash(bridge.annotated_filepath(pose_file)) if pose_file else ""

    @classmethod
    def VALIDATE_INPUTS(cls, pose_file=None):
        if not pose_file or not bridge.exists_annotated_filepath(pose_file):
            return f"Invalid pose file: {pose_file!r}; put it in ComfyUI's input folder ({bridge.input_directory()})."
        return True


def detector_device(device: str) -> str:
    """DWPose's device name: "auto" follows ComfyUI's device (cuda or cpu)."""
    if device == "auto":
        return "cuda" if getattr(bridge.torch_device(), "type", "cpu") == "cuda" else "cpu"
    return device


class IASADWPose:
    """DWPose WholeBody keypoints of a photo or of every frame of a video."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {
                    "tooltip": "One image (the reference photo) or a batch of video frames (e.g. from "
                               "Get Video Components)."}),
                "choose": (["largest", "central"], {
                    "default": "largest",
                    "tooltip": "Which person when several are found: the largest, or the one nearest the centre. "
                               "In a video the chosen person is then tracked."}),
                "device": (["auto", "cpu", "cuda"], {
                    "default": "auto",
                    "tooltip": "Where DWPose runs; auto follows ComfyUI's device."}),
                "fps": ("FLOAT", {
                    "default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001,
                    "tooltip": "Frame rate stored with the poses (the video's fps for video frames)."}),
            },
        }

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("poses",)
    OUTPUT_TOOLTIPS = ("One pose per input image (pixels of the image), with the fps.",)
    FUNCTION = "detect"
    CATEGORY = "IASA/pose"
    DESCRIPTION = ("Finds one person's 133 COCO-WholeBody keypoints with DWPose (yolox_l.onnx + "
                   "dw-ll_ucoco_384.onnx, or their TorchScript versions, from yzd-v/DWPose in "
                   "ComfyUI/models/dwpose, or where comfyui_controlnet_aux keeps them: its ckpts/yzd-v/DWPose; "
                   "nothing is downloaded). The detector stays loaded between runs.")

    def detect(self, image, choose="largest", device="auto", fps=25.0):
        from iasa_core import validate
        from iasa_core.node_support import cached_detector, to_pose_keypoint
        from iasa_core.pose.sequence import PoseSequence

        fps = validate.fps(fps, "fps")
        if getattr(image, "ndim", 0) != 4 or image.shape[0] == 0:
            raise ValueError(f"image must be a ComfyUI IMAGE [batch, height, width, channels]; "
                             f"got shape {tuple(getattr(image, 'shape', ()))}")
        frames = image.detach().to("cpu").float().numpy()
        detector = cached_detector(bridge.dwpose_dirs(), detector_device(device))
        progress = bridge.progress_callback(len(frames))

        def step(done, total):
            progress(done, total)
            bridge.throw_if_interrupted()

        if len(frames) == 1:
            kps = detector.detect(frames[0], name="the image", choose=choose)[None]
            step(1, 1)
        else:
            kps = detector.detect_video(frames, progress=step, name="the video frames", choose=choose)
        seq = PoseSequence(kps, frames.shape[1], frames.shape[2], fps=float(fps))
        return (to_pose_keypoint(seq),)


class IASARenderPoses:
    """Skeleton images of poses (the pose conditioning of stage 2)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "poses": ("POSE_KEYPOINT", {"tooltip": POSE_TOOLTIP}),
                "width": ("INT", {
                    "default": 0, "min": 0, "max": 8192, "step": 1,
                    "tooltip": "Image width in pixels; 0 = the poses' canvas (or keep its aspect ratio when "
                               "only the height is given)."}),
                "height": ("INT", {
                    "default": 0, "min": 0, "max": 8192, "step": 1,
                    "tooltip": "Image height in pixels; 0 = the poses' canvas (or keep its aspect ratio when "
                               "only the width is given)."}),
                "hands": ("BOOLEAN", {"default": True, "tooltip": "Draw the hands (21 points each)."}),
                "face": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Draw the 68 face points (UniAnimate's pose images have none)."}),
                "bgr": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Swap red and blue, as the images UniAnimate-trained weights were trained on."}),
                "min_score": ("FLOAT", {
                    "default": 0.3, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Draw points with at least this confidence; a limb needs both ends."}),
            },
            "optional": {
                "mouth": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Draw the mouth's opening as a patch whose brightness grows as the mouth opens "
                               "(for models trained with pose_mouth; the shipped models were not)."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("One skeleton image per pose frame, black background.",)
    FUNCTION = "render"
    CATEGORY = "IASA/pose"
    DESCRIPTION = ("Draws poses as OpenPose/DWPose-style skeleton images (body, hands, optional face), the "
                   "pictures IASA's pose encoder sees.")

    def render(self, poses, width=0, height=0, hands=True, face=False, bgr=False, min_score=0.3, mouth=False):
        import torch

        from iasa_core import validate
        from iasa_core.node_support import render_size, sequence_from_pose_keypoint
        from iasa_core.pose.render import RenderStyle, render_poses

        min_score = validate.finite(min_score, "min_score", low=0.0)
        seq = sequence_from_pose_keypoint(poses, name="poses")
        h, w = render_size(seq, width, height)
        style = RenderStyle(hands=bool(hands), face=bool(face), mouth=bool(mouth), bgr=bool(bgr),
                            min_score=float(min_score))
        progress = bridge.progress_callback(len(seq))

        def step(done, total):
            progress(done, total)
            bridge.throw_if_interrupted()

        frames = render_poses(seq, h, w, style, progress=step)
        return (torch.from_numpy(frames).float() / 255.0,)


NODE_CLASS_MAPPINGS = {
    "IASALoadPoses": IASALoadPoses,
    "IASADWPose": IASADWPose,
    "IASARenderPoses": IASARenderPoses,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "IASALoadPoses": "IASA Load Poses",
    "IASADWPose": "IASA DWPose",
    "IASARenderPoses": "IASA Render Poses",
}
