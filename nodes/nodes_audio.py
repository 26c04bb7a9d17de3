"""Audio stage: speech from the input folder (or a connected AUDIO) as a checked ComfyUI AUDIO."""

from __future__ import annotations

import hashlib
import os

from . import comfy_bridge as bridge

# Audio files, plus video containers whose sound track load_audio reads (as core LoadAudio lists both).
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff",
                    ".mp4", ".mov", ".mkv", ".webm")


def file_hash(path: str) -> str:
    """sha256 of a file's bytes ("" when it does not exist), for IS_CHANGED."""
    if not path or not os.path.isfile(path):
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class IASALoadAudio:
    """Speech for the talking video: a file from ComfyUI's input folder, or a connected AUDIO."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                # No "audio_upload": the frontend's audio upload widget only works on core audio nodes
                # (on a custom node it fails to build the node at all); upload with core Load Audio instead.
                "audio_file": (bridge.list_input_files(AUDIO_EXTENSIONS), {
                    "tooltip": "Speech file in ComfyUI's input folder (wav, mp3, flac, ogg, m4a, or a video's "
                               "sound track). This node has no upload button: to get a file in, copy it into "
                               "ComfyUI/input and press R (refresh), or upload it with core Load Audio and "
                               "connect that to 'audio'. Ignored when 'audio' is connected."}),
                "max_seconds": ("FLOAT", {
                    "default": 600.0, "min": 1.0, "max": 36000.0, "step": 1.0,
                    "tooltip": "Refuse audio longer than this many seconds (long clips take long to animate)."}),
            },
            "optional": {
                "audio": ("AUDIO", {
                    "tooltip": "Audio from another node (e.g. Load Audio or a video's sound); used instead of "
                               "the file when connected."}),
            },
        }

    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The speech as a ComfyUI AUDIO (waveform [1, channels, samples], original rate).",)
    FUNCTION = "load"
    CATEGORY = "IASA/audio"
    DESCRIPTION = ("Loads speech for IASA and checks it: missing, empty, corrupt, silent or too long audio "
                   "stops here with a clear message. Keeps the original sample rate and channels.")

    def load(self, audio_file=None, max_seconds=600.0, audio=None):
        from iasa_core.audio import load_audio

        if audio is not None:
            clip = load_audio(audio, max_seconds=float(max_seconds), name="audio")
        else:
            if not audio_file:
                raise ValueError("No audio: put a speech file in ComfyUI's input folder "
                                 f"({bridge.input_directory()}) and choose it, or connect an AUDIO input.")
            clip = load_audio(bridge.annotated_filepath(audio_file), max_seconds=float(max_seconds),
                              name="audio_file")
        return (clip.to_comfy(),)

    @classmethod
    def IS_CHANGED(cls, audio_file=None, **kwargs):
        return file_hash(bridge.annotated_filepath(audio_file)) if audio_file else ""

    @classmethod
    def VALIDATE_INPUTS(cls, audio_file=None):
        # Only audio_file is asked for: ComfyUI reports a failure once per argument named here, so taking
        # input_types too listed the same message twice. Without it the node cannot see whether 'audio' is
        # connected, so an empty choice passes here and load() says what is missing.
        if audio_file and not bridge.exists_annotated_filepath(audio_file):
            return (f"audio_file {audio_file!r} is not in ComfyUI's input folder ({bridge.input_directory()}): "
                    "copy it there and press R, pick another file, or connect an AUDIO to 'audio'.")
        return True


NODE_CLASS_MAPPINGS = {"IASALoadAudio": IASALoadAudio}
NODE_DISPLAY_NAME_MAPPINGS = {"IASALoadAudio": "IASA Load Audio"}
