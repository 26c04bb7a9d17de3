"""Options of the training-data preparation, their checks, and the part a dataset folder pins down."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from iasa_core.detect import filter as F

# Bump when the shard/manifest layout changes: a reader or a resumed run refuses other versions.
FORMAT_VERSION = 1

# Wan's VAE downsamples by 8 and its patchifier by 2: frame sides must be multiples of 16.
SIDE_MULTIPLE = 16

# Options that change what a clip holds: a resumed run into the same folder must match them all,
# or one dataset would mix clips of different sizes, rates or filters.
CONTENT_KEYS = ("height", "width", "fps", "frames", "stride", "max_clips_per_video", "margin",
                "face_min", "upper_min", "visible_fraction", "visible_score", "audio_rate", "label_stride")


class PrepareError(ValueError):
    """A preparation input or option that cannot be used, with a message meant for the user."""


@dataclass(frozen=True)
class PrepareOptions:
    """What one clip looks like and which frames may go into it."""

    height: int = 512
    width: int = 512
    fps: float = 25.0
    frames: int = 81  # Wan's VAE needs 4n + 1 frames
    stride: int | None = None  # first-frame distance of consecutive clips in a run; None = frames
    max_clips_per_video: int | None = None
    margin: float = 1.5  # crop side / side of the box around face, upper body and hands
    face_min: float = F.FACE_MIN
    upper_min: float = F.UPPER_MIN
    visible_fraction: float = F.VISIBLE_FRACTION
    visible_score: float = F.VISIBLE_SCORE
    audio_rate: int = 16000
    label_stride: int | None = None  # pixels per region-label cell; None = short side // 128
    allow_no_audio: bool = False
    clips_per_shard: int = 8  # bounds memory: a shard is built in RAM before it is written

    @property
    def clip_stride(self) -> int:
        """Frames between the starts of consecutive clips cut from one run."""
        return self.stride if self.stride is not None else self.frames

    @property
    def label_cell(self) -> int:
        """Side in pixels of the cells the region labels are computed on (then upsampled)."""
        if self.label_stride is not None:
            return self.label_stride
        # 4 px at 512: tight enough for a pixel loss, and 16x fewer points than full resolution.
        return max(1, min(self.height, self.width) // 128)

    def validate(self) -> PrepareOptions:
        """Raise PrepareError on an unusable value; returns self."""
        def bad(flag: str, value: Any, expected: str, fix: str) -> PrepareError:
            return PrepareError(f"{flag} {value!r}: expected {expected}; {fix}")

        for flag, v in (("--size height", self.height), ("--size width", self.width)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % SIDE_MULTIPLE:
                raise bad(flag, v, f"a positive multiple of {SIDE_MULTIPLE} (Wan's VAE x patch size)",
                          "e.g. --size 512 or --size 480 832")
        f = self.frames
        if isinstance(f, bool) or not isinstance(f, int) or f < 5 or (f - 1) % 4:
            lo = max(((f - 1) // 4) * 4 + 1, 5) if isinstance(f, int) and not isinstance(f, bool) else 81
            raise bad("--frames", f, "4n + 1 frames with n >= 1 (Wan's VAE compresses time by 4)",
                      f"use e.g. {lo} or {lo + 4}")
        if not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps) or not 0 < self.fps <= 240:
            raise bad("--fps", self.fps, "a frame rate in (0, 240]", "e.g. --fps 25")
        for flag, v in (("--stride", self.stride), ("--max-clips-per-video", self.max_clips_per_video),
                        ("--label-stride", self.label_stride)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise bad(flag, v, "a positive integer", "or leave it out for the default")
        if isinstance(self.clips_per_shard, bool) or not isinstance(self.clips_per_shard, int) \
                or self.clips_per_shard < 1:
            raise bad("--clips-per-shard", self.clips_per_shard, "a positive integer", "e.g. 8")
        if not isinstance(self.margin, (int, float)) or not math.isfinite(self.margin) or self.margin < 1.0:
            raise bad("--margin", self.margin, "a number >= 1 (crop side over the pose box side)", "e.g. 1.5")
        if isinstance(self.audio_rate, bool) or not isinstance(self.audio_rate, int) or self.audio_rate <= 0:
            raise bad("--audio-rate", self.audio_rate, "a positive sample rate in Hz", "e.g. 16000")
        for flag, v in (("--face-min", self.face_min), ("--upper-min", self.upper_min),
                        ("--visible-fraction", self.visible_fraction), ("--visible-score", self.visible_score)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise bad(flag, v, "a finite number", "or leave it out for the paper's value")
        return self

    def content(self) -> dict[str, Any]:
        """The options a dataset folder pins down (resolved defaults included), plus the format version."""
        d = dataclasses.asdict(self)
        out = {k: d[k] for k in CONTENT_KEYS}
        out["stride"] = self.clip_stride
        out["label_stride"] = self.label_cell
        out["fps"] = float(self.fps)
        out["version"] = FORMAT_VERSION
        return out

    def to_json(self) -> dict[str, Any]:
        """Every option as plain JSON values (what dataset.json records)."""
        return dataclasses.asdict(self)
