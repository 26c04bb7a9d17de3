"""Video stage: frames + fps + speech -> a core VIDEO (save it with Save Video)."""

from __future__ import annotations

from . import comfy_bridge as bridge


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
        from iasa_core.audio import load_audio

        fps = validate.fps(fps, "fps")
        shape = tuple(getattr(images, "shape", ()))
        if len(shape) != 4 or shape[0] == 0 or shape[-1] != 3:
            raise ValueError(f"images must be a ComfyUI IMAGE [frames, height, width, 3]; got shape {shape}")
        if audio is not None:
            # Checked and normalised (float32 on the CPU, one batch item); silence is allowed in an output.
            audio = load_audio(audio, max_seconds=None, allow_silent=True, name="audio").to_comfy()
            if audio["waveform"].shape[1] == 1:
                # Core VIDEO writers (ComfyUI 0.3.64) encode into a stereo AAC stream, and the resampler's
                # mono -> stereo upmix puts the channel at -3 dB on each side. Copy it to both channels at
                # unity gain here, so the saved speech is as loud as the file.
                audio = {**audio, "waveform": audio["waveform"].repeat(1, 2, 1)}
        return (bridge.make_video(images.detach().to("cpu").float(), fps, audio),)


NODE_CLASS_MAPPINGS = {"IASAVideo": IASAVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"IASAVideo": "IASA Video (frames + audio)"}
