"""Video stage: frames + fps + speech -> a core VIDEO (save it with Save Video)."""

from __future__ import annotations

import logging

from . import comfy_bridge as bridge

log = logging.getLogger(__name__)


def audio_for_video(audio, seconds: float | None = None) -> dict:
    """A checked AUDIO for core video writers: float32 on the CPU, cut to ``seconds``, mono copied to stereo."""
    from iasa_core.audio import load_audio

    # Checked and normalised (float32 on the CPU, one batch item); silence is allowed in an output.
    clip = load_audio(audio, max_seconds=None, allow_silent=True, name="audio")
    if seconds is not None:
        clip = clip.trimmed(seconds)
    audio = clip.to_comfy()
    if audio["waveform"].shape[1] == 1:
        # Core VIDEO writers (ComfyUI 0.3.64) encode into a stereo AAC stream, and the resampler's
        # mono -> stereo upmix puts the channel at -3 dB on each side. Copy it to both channels at
        # unity gain here, so the saved speech is as loud as the file.
        audio = {**audio, "waveform": audio["waveform"].repeat(1, 2, 1)}
    return audio


class IASAVideo:
    """Joins the frames and the speech into ComfyUI's VIDEO type."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames (e.g. from IASA Sampler)."}),
                "fps": ("FLOAT", {
                    "default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001,
                    "tooltip": "Frame rate (connect IASA Sampler's fps output)."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Sound track, e.g. the speech the poses were made from."}),
            },
        }

    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("A VIDEO for Save Video (H.264 mp4 with the audio).",)
    FUNCTION = "combine"
    CATEGORY = "IASA/video"
    DESCRIPTION = "Combines frames, frame rate and audio into a VIDEO; connect it to Save Video to write an mp4."

    def combine(self, images, fps=25.0, audio=None):
        from iasa_core import validate

        fps = validate.fps(fps, "fps")
        shape = tuple(getattr(images, "shape", ()))
        if len(shape) != 4 or shape[0] == 0 or shape[-1] != 3:
            raise ValueError(f"images must be a ComfyUI IMAGE [frames, height, width, 3]; got shape {shape}")
        if audio is not None:
            audio = audio_for_video(audio)
        return (bridge.make_video(images.detach().to("cpu").float(), fps, audio),)


class IASAVideoLength:
    """The frame count, fps and sound track of a native Wan video made from poses."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "poses": ("POSE_KEYPOINT", {
                    "tooltip": "The poses the video follows (e.g. from IASA Motion); their count and fps set the "
                               "video's length."}),
                "max_frames": ("INT", {
                    "default": 81, "min": 1, "max": 10001, "step": 4,
                    "tooltip": "Most frames to generate in one go (Wan was trained on up to 81; more needs more "
                               "memory). Longer poses are cut, with a console warning, and so is the audio."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "The speech, passed on for Create Video (cut when the poses are)."}),
            },
        }

    RETURN_TYPES = ("INT", "FLOAT", "AUDIO")
    RETURN_NAMES = ("length", "fps", "audio")
    OUTPUT_TOOLTIPS = (
        "Frames to generate: the shortest 4k+1 covering every pose (Wan's VAE packs 4 frames per latent), at "
        "most max_frames. Connect to the Wan node's length.",
        "The poses' frame rate: connect to Create Video's fps so the speech stays in sync.",
        "The speech for Create Video, as loud as the file (mono copied to both stereo channels).",
    )
    FUNCTION = "measure"
    CATEGORY = "IASA/video"
    DESCRIPTION = ("Sizes a native Wan video (WanAnimateToVideo, WanFunControlToVideo ...) to the poses made from "
                   "the speech: its length in frames, the fps for Create Video, and the audio to put under it.")

    def measure(self, poses, max_frames=81, audio=None):
        from iasa_core.node_support import sequence_from_pose_keypoint
        from iasa_core.video_length import wan_video_length

        seq = sequence_from_pose_keypoint(poses, name="poses")
        size = wan_video_length(len(seq), float(seq.fps), int(max_frames))
        if size.capped:
            log.warning("IASA Video Length: the poses last %.2f s (%d frames at %g fps) but max_frames is %d: "
                        "the video gets the first %d frames (%.2f s) and the audio is cut to match; raise "
                        "max_frames (more memory) or split the speech.", size.pose_seconds, size.poses,
                        size.fps, int(max_frames), size.length, size.seconds)
        out_audio = None
        if audio is not None:
            out_audio = audio_for_video(audio, size.seconds if size.capped else None)
        return (size.length, size.fps, out_audio)


NODE_CLASS_MAPPINGS = {"IASAVideo": IASAVideo, "IASAVideoLength": IASAVideoLength}
NODE_DISPLAY_NAME_MAPPINGS = {"IASAVideo": "IASA Video (frames + audio)",
                              "IASAVideoLength": "IASA Video Length (poses to Wan frames)"}
