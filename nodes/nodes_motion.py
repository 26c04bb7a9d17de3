"""Motion stage: speech -> a pose sequence of the reference person (procedural or EMAGE)."""

from __future__ import annotations

from . import comfy_bridge as bridge
from .nodes_pose import detector_device

SMPLX_EXTENSIONS = (".npz", ".pkl")


class IASAMotion:
    """Speech -> WholeBody poses aligned to the person in the reference image."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "The speech to animate (e.g. from IASA Load Audio)."}),
                "method": (["procedural", "emage"], {
                    "default": "procedural",
                    "tooltip": "procedural: audio-driven head, lips, blinks and gestures, no weights needed. "
                               "emage: EMAGE (H-Liu1997/emage_audio in models/emage) + your SMPL-X model "
                               "file (models/smplx)."}),
                "fps": ("FLOAT", {
                    "default": 25.0, "min": 1.0, "max": 120.0, "step": 0.001,
                    "tooltip": "Pose (and video) frame rate."}),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                    "tooltip": "Seed of the procedural gestures and blinks."}),
                "seconds": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 36000.0, "step": 0.1,
                    "tooltip": "0 = the whole audio; otherwise only its first this-many seconds are animated."}),
            },
            "optional": {
                "reference_image": ("IMAGE", {
                    "tooltip": "The reference photo; its pose is found with DWPose (weights in models/dwpose). "
                               "Needed unless reference_pose is connected."}),
                "reference_pose": ("POSE_KEYPOINT", {
                    "tooltip": "The reference pose (first frame used; wins over the image): from IASA DWPose, "
                               "IASA Load Poses or comfyui_controlnet_aux (normalised or pixel coordinates)."}),
                "emage_model": (["none"] + bridge.list_model_subdirs("emage"), {
                    "default": "none",
                    "tooltip": "EMAGE weights folder in models/emage (the H-Liu1997/emage_audio repo: "
                               "config.json, weights and emage_vq/). Needed for method emage."}),
                "smplx_model": (["none"] + bridge.list_models("smplx", SMPLX_EXTENSIONS), {
                    "default": "none",
                    "tooltip": "SMPLX_NEUTRAL_2020.npz in models/smplx (from smpl-x.is.tue.mpg.de, MPI licence; "
                               "never shipped). Needed for method emage."}),
            },
        }

    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("poses",)
    OUTPUT_TOOLTIPS = ("One pose per video frame on the reference's canvas, with the fps.",)
    FUNCTION = "generate"
    CATEGORY = "IASA/motion"
    DESCRIPTION = ("Turns speech into a pose sequence of the reference person: lips, face, head, hands and upper "
                   "body move with the audio. Connect reference_pose or reference_image; the poses use its size.")

    def generate(self, audio, method="procedural", fps=25.0, seed=0, seconds=0.0, reference_image=None,
                 reference_pose=None, emage_model="none", smplx_model="none"):
        from iasa_core import validate
        from iasa_core.audio import load_audio
        from iasa_core.motion.from_audio import poses_from_audio
        from iasa_core.node_support import reference_from_pose_keypoint, to_pose_keypoint

        fps = validate.fps(fps, "fps")
        seconds = validate.finite(seconds, "seconds", low=0.0)
        seed = validate.seed(seed, "seed")
        clip = load_audio(audio, max_seconds=None, name="audio")
        if seconds > 0:
            clip = clip.trimmed(seconds)
        validate.audio_length(clip.duration, "audio" + (f" (its first {seconds:g} s)" if seconds > 0 else ""))
        if reference_pose is not None:
            reference, height, width = reference_from_pose_keypoint(reference_pose, name="reference_pose")
        elif reference_image is not None:
            from iasa_core.media import load_image
            from iasa_core.node_support import cached_detector

            image = load_image(reference_image, name="reference_image")
            validate.reference_image(image.shape, "reference_image")
            detector = cached_detector(bridge.dwpose_dirs(), detector_device("auto"))
            reference = detector.detect(image, name="reference_image")
            height, width = image.shape[:2]
        else:
            raise ValueError("IASA Motion needs the reference person: connect reference_pose (e.g. from IASA DWPose "
                             "or IASA Load Poses) or reference_image (its pose is found with DWPose).")
        emage_dir = smplx_file = None
        if method == "emage":
            if not emage_model or emage_model == "none":
                raise ValueError("method 'emage' needs EMAGE's weights: download the Hugging Face repo "
                                 f"H-Liu1997/emage_audio into a folder in {bridge.where_to_put('emage')}, refresh, "
                                 "and choose it as emage_model (or use method 'procedural').")
            if not smplx_model or smplx_model == "none":
                raise ValueError("method 'emage' needs the SMPL-X body model: put SMPLX_NEUTRAL_2020.npz "
                                 "(from https://smpl-x.is.tue.mpg.de, MPI licence) in "
                                 f"{bridge.where_to_put('smplx')}, refresh, and choose it as smplx_model.")
            emage_dir = bridge.full_model_dir("emage", emage_model, "EMAGE weights folder")
            smplx_file = bridge.full_model_path("smplx", smplx_model, "SMPL-X model file")
        bridge.throw_if_interrupted()
        seq = poses_from_audio(clip, reference, height, width, method=method, fps=float(fps), seed=int(seed),
                               emage_model=emage_dir, smplx_model=smplx_file, allow_download=False)
        return (to_pose_keypoint(seq),)


NODE_CLASS_MAPPINGS = {"IASAMotion": IASAMotion}
NODE_DISPLAY_NAME_MAPPINGS = {"IASAMotion": "IASA Motion (audio to poses)"}
