"""Contact sheets: rows of frames (reference, ground truth, each model's output) side by side in one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_WIDTH = 150


def pick_frames(length: int, count: int = 6) -> list[int]:
    """``count`` frame indices spread over a video of ``length`` frames, first and last included."""
    if length < 1:
        raise ValueError("a video needs at least one frame")
    return sorted({round(i * (length - 1) / max(1, count - 1)) for i in range(count)})


def contact_sheet(rows: Sequence[tuple[str, np.ndarray]], frames: Sequence[int], *, scale: int = 1) -> Image.Image:
    """One labelled row per (label, video (T, H, W, 3) uint8), showing the same frame indices in every row.

    A row with fewer frames than an index shows its last frame (e.g. a single reference image)."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    h, w = rows[0][1].shape[1:3]
    for label, video in rows:
        if video.ndim != 4 or video.shape[1:] != (h, w, 3) or video.dtype != np.uint8:
            raise ValueError(f"row {label!r}: expected (frames, {h}, {w}, 3) uint8, got {video.shape} {video.dtype}")
    sheet = Image.new("RGB", (LABEL_WIDTH + len(frames) * w * scale, 14 + len(rows) * h * scale), "white")
    draw = ImageDraw.Draw(sheet)
    for j, f in enumerate(frames):
        draw.text((LABEL_WIDTH + j * w * scale + 2, 1), f"frame {f}", fill="black")
    for i, (label, video) in enumerate(rows):
        top = 14 + i * h * scale
        draw.text((4, top + h * scale // 2 - 6), label[:24], fill="black")
        for j, f in enumerate(frames):
            tile = Image.fromarray(video[min(f, len(video) - 1)])
            if scale != 1:
                tile = tile.resize((w * scale, h * scale), Image.NEAREST)
            sheet.paste(tile, (LABEL_WIDTH + j * w * scale, top))
    return sheet


def save_contact_sheet(path: str | Path, rows: Sequence[tuple[str, np.ndarray]], frames: Sequence[int] | None = None,
                       *, scale: int = 1) -> Path:
    """Write ``contact_sheet`` as PNG (frames: six spread over the first row's length by default)."""
    path = Path(path)
    frames = list(frames) if frames is not None else pick_frames(len(rows[0][1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(rows, frames, scale=scale).save(path)
    return path
