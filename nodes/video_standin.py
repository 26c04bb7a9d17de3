"""A VIDEO object for when ComfyUI is absent (tests): the methods SaveVideo and GetVideoComponents use.

Inside ComfyUI the pack returns comfy_api's own ``VideoFromComponents``; this stand-in mirrors its
interface (``get_components``, ``get_dimensions``, ``save_to``) and writes with iasa_core's video writer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass
class VideoComponentsStandIn:
    """Same fields as comfy_api's VideoComponents."""

    images: Any
    frame_rate: Fraction
    audio: dict | None = None
    metadata: dict | None = None


class VideoStandIn:
    """Frames (IMAGE [T, H, W, 3] float 0..1), a frame rate and an optional AUDIO dict."""

    def __init__(self, images, frame_rate: Fraction, audio: dict | None = None):
        self._components = VideoComponentsStandIn(images=images, frame_rate=Fraction(frame_rate), audio=audio)

    def get_components(self) -> VideoComponentsStandIn:
        """The frames, frame rate and audio."""
        c = self._components
        return VideoComponentsStandIn(images=c.images, frame_rate=c.frame_rate, audio=c.audio)

    def get_dimensions(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        images = self._components.images
        return int(images.shape[2]), int(images.shape[1])

    def save_to(self, path: str | os.PathLike, format: Any = "auto", codec: Any = "auto",
                metadata: dict | None = None) -> None:
        """Write an H.264 mp4 (with the audio as AAC); like VideoFromComponents, only mp4/h264.

        ``metadata`` (the workflow SaveVideo embeds) is accepted and not written by this stand-in.
        """
        from iasa_core.media import write_video

        fmt = str(getattr(format, "value", format)).lower()
        cod = str(getattr(codec, "value", codec)).lower()
        if fmt not in ("auto", "mp4"):
            raise ValueError(f"Only the mp4 format is supported for this video, not {fmt!r}")
        if cod not in ("auto", "h264"):
            raise ValueError(f"Only the h264 codec is supported for this video, not {cod!r}")
        c = self._components
        write_video(path, c.images, c.frame_rate, audio=c.audio)
