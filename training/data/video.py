"""Finding source videos, probing them, and decoding frames as a stream resampled to a target fps.

Frames are streamed (never the whole video in memory: a minute of 1080p is 9 GB of RGB) and taken
as evenly spaced at the stream's average rate, the same assumption a keypoint file with one entry
per decoded frame makes. Variable-frame-rate sources drift under it; re-encode them to a constant
rate first (``ffmpeg -i in.mp4 -vsync cfr out.mp4``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")


class VideoReadError(ValueError):
    """A source video that cannot be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video before decoding it."""

    width: int
    height: int
    fps: Fraction
    num_frames: int | None  # from the container header; None when it does not say (webm, some mkv)
    has_audio: bool


def find_videos(root: str | os.PathLike) -> list[Path]:
    """Every file under ``root`` (recursive) with a video extension, sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--videos {root}: no such folder; give the folder holding the talking "
                                f"videos ({', '.join(VIDEO_EXTENSIONS)})")
    found = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
             and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def video_id(relative: str) -> str:
    """A file-name-safe, unique id for a video: its sanitised relative path plus a short hash."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", relative).strip("_")[-80:] or "video"
    # The hash tells apart paths that sanitise alike ("a b.mp4" and "a_b.mp4").
    return f"{stem}-{hashlib.sha1(relative.encode('utf-8')).hexdigest()[:8]}"


def _open(path: Path):
    import av

    if not path.is_file() or path.stat().st_size == 0:
        raise VideoReadError(f"{path} is empty or not a file")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoReadError(f"{path} could not be opened as a video ({exc})") from exc


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, rate, frame count and audio presence of a video; VideoReadError when unreadable."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise VideoReadError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise VideoReadError(f"{path} states no frame rate")
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            raise VideoReadError(f"{path} states no frame size")
        return VideoInfo(width=int(ctx.width), height=int(ctx.height), fps=Fraction(rate),
                         num_frames=int(stream.frames) or None, has_audio=bool(container.streams.audio))


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decoded frames (H, W, 3) uint8 RGB in presentation order; VideoReadError on a decode failure."""
    import av

    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise VideoReadError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        try:
            for frame in container.decode(stream):
                count += 1
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise VideoReadError(f"{path}: decoding failed after {count} frames ({exc})") from exc


def as_fraction(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction (29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


def source_index(out_index: int | np.ndarray, src_fps: Fraction, fps: Fraction) -> int | np.ndarray:
    """Nearest source frame of output frame ``out_index`` (at out_index / fps seconds)."""
    ratio = Fraction(src_fps) / Fraction(fps)
    # floor(j * ratio + 1/2) in exact integer arithmetic: floats would flip ties between runs.
    j = np.asarray(out_index, dtype=np.int64)
    idx = (2 * j * ratio.numerator + ratio.denominator) // (2 * ratio.denominator)
    return int(idx) if np.ndim(out_index) == 0 else idx


def resampled_indices(num_src: int, src_fps: Fraction, fps: Fraction) -> np.ndarray:
    """Source frame of every output frame whose nearest source frame exists (num_src frames)."""
    if num_src <= 0:
        return np.zeros(0, dtype=np.int64)
    # Output j exists while its nearest source index stays below num_src.
    bound = int((num_src - 0.5) * Fraction(fps) / Fraction(src_fps)) + 2
    idx = source_index(np.arange(bound), src_fps, fps)
    return idx[idx < num_src]


def iter_resampled(frames: Iterable[np.ndarray], src_fps: Fraction,
                   fps: Fraction) -> Iterator[tuple[int, int, np.ndarray]]:
    """(output index, source index, frame) at ``fps`` from source frames at ``src_fps`` (nearest)."""
    j = 0
    want = source_index(0, src_fps, fps)
    for i, frame in enumerate(frames):
        # Upsampling repeats a source frame for several outputs; downsampling skips some.
        while want == i:
            yield j, i, frame
            j += 1
            want = source_index(j, src_fps, fps)
