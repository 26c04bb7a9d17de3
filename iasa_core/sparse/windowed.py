"""Sparse plans of a long video as generation builds them: one per sampling window, one window at a time.

A single plan over a whole long video holds block masks that grow with the square of its length (10 000
frames at 480x832: 30 000 x 30 000 blocks, gigabytes); generation never builds one, it plans each window of
at most 81 frames. ``window_plans`` does the same, so describing a long video takes the memory of one window.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..sampling.windows import Window, latent_frames, plan_windows
from .plan import SparsePlan, _as_keypoints, build_plan


def window_plans(keypoints: Any, video_size: tuple[int, int], window_frames: int, overlap: int,
                 **plan_options: Any) -> Iterator[tuple[Window, SparsePlan]]:
    """(window, plan) of every sampling window in turn; each plan can be dropped before the next is built.

    ``keypoints``: a PoseSequence or (F, 133, 3) array in video pixels; padded to 4n+1 frames with its last
    pose as generation pads it. ``window_frames`` (4n+1) and ``overlap`` (latent frames) as ``generate``'s."""
    if window_frames < 5 or (window_frames - 1) % 4:
        raise ValueError(f"window frames must be 4n+1 and at least 5; got {window_frames}")
    kp = _as_keypoints(keypoints, video_size)
    target = 4 * ((len(kp) - 1 + 3) // 4) + 1
    if target != len(kp):
        kp = np.concatenate([kp, np.repeat(kp[-1:], target - len(kp), axis=0)])
    for window in plan_windows(latent_frames(len(kp)), latent_frames(window_frames), overlap):
        yield window, build_plan(kp[window.video_frames], video_size, **plan_options)


def windows_summary(summaries: list[dict[str, Any]], video_frames: int) -> dict[str, Any]:
    """One summary of a video's window plans: their count, density range and mean, and each window's summary."""
    density = [s["density"] for s in summaries]
    token = [s["token_density"] for s in summaries]
    return {"video_frames": video_frames, "windows": len(summaries), "window_frames": summaries[0]["video_frames"],
            "density_mean": float(np.mean(density)), "density_min": min(density), "density_max": max(density),
            "token_density_mean": float(np.mean(token)),
            "build_seconds": sum(s["build_seconds"] for s in summaries), "per_window": summaries}
