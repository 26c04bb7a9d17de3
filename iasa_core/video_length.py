"""How many frames a native Wan video of a pose sequence gets: 4k+1 frames (Wan's VAE packs 4 per latent)."""

from __future__ import annotations

import math
from dataclasses import dataclass

WAN_FRAME_STEP = 4  # Wan 2.1/2.2 VAE: latent 0 is frame 0, each later latent 4 frames
WAN_MAX_FRAMES = 81  # what Wan 2.1/2.2 (and Animate) were trained on per window


@dataclass(frozen=True)
class VideoLength:
    """A video length for a pose sequence: frames to generate and what it covers."""

    length: int  # frames to generate, 4k+1
    poses: int  # pose frames there are
    fps: float
    capped: bool  # True when the poses last longer than max_frames allows

    @property
    def seconds(self) -> float:
        """Duration of the generated video."""
        return self.length / self.fps

    @property
    def pose_seconds(self) -> float:
        """Duration of the poses."""
        return self.poses / self.fps


def wan_video_length(poses: int, fps: float, max_frames: int = WAN_MAX_FRAMES,
                     step: int = WAN_FRAME_STEP) -> VideoLength:
    """The shortest 4k+1 frames covering ``poses`` frames, or the longest 4k+1 within ``max_frames``."""
    if isinstance(poses, bool) or not isinstance(poses, int) or poses < 1:
        raise ValueError(f"poses must hold at least one frame; got {poses!r} frames")
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a whole number of frames >= 1; got {max_frames!r}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a number above 0; got {fps!r}")
    covering = 1 + step * math.ceil((poses - 1) / step)
    cap = 1 + step * ((max_frames - 1) // step)
    return VideoLength(length=min(covering, cap), poses=poses, fps=float(fps), capped=covering > cap)
