"""Per-frame filter verdicts, cutting runs of kept frames into clips, crop + resize, region labels, audio.

Coordinates: keypoints are in pixel-index units (pixel i's centre is at i), as DWPose writes them and
``iasa_core.pose.render`` draws them. Resizing a crop of side c to side s maps the pixel edges
[0, c] onto [0, s], so a point moves as x' = (x - x0 + 0.5) * s / c - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as TF

from iasa_core.detect.filter import training_filter
from iasa_core.pose import layout as L

from .options import PrepareOptions

KEPT = "kept"
# Why a frame of the resampled timeline is not in any clip, in the order they are tested.
FILTER_REASONS = ("no_person", "face_score", "upper_body_score", "visibility")
CLIP_REASONS = ("run_too_short", "run_remainder", "max_clips")
DROP_REASONS = FILTER_REASONS + CLIP_REASONS

# Points that must fit in the crop: head, face, arms and hands (hips and legs are not framed).
CROP_POINTS = np.array(sorted(set(L.UPPER_BODY) | set(L.FACE) | set(L.LEFT_HAND) | set(L.RIGHT_HAND)))


def filter_reasons(kp: np.ndarray, opts: PrepareOptions) -> np.ndarray:
    """Per frame of keypoints (T, 133, 3): "kept" or the first filter criterion it fails."""
    kp = np.asarray(kp, dtype=np.float64)
    out = np.full(len(kp), KEPT, dtype=object)
    if len(kp) == 0:
        return out
    off = -np.inf  # a threshold that every frame passes, to test one criterion at a time

    def crit(face: float, upper: float, visible: float) -> np.ndarray:
        return training_filter(kp, face_min=face, upper_min=upper, visible_fraction=visible,
                               visible_score=opts.visible_score)

    passes = crit(opts.face_min, opts.upper_min, opts.visible_fraction)
    checks = (
        ("no_person", ~(kp[..., 2] > 0).any(-1)),
        ("face_score", ~crit(opts.face_min, off, off)),
        ("upper_body_score", ~crit(off, opts.upper_min, off)),
        ("visibility", ~crit(off, off, opts.visible_fraction)),
    )
    for reason, failed in reversed(checks):  # reversed: the first failing criterion wins
        out[failed] = reason
    # The verdict is the library filter's; the reasons only explain it.
    assert ((out == KEPT) == passes).all()
    return out


def plan_clips(reasons: np.ndarray, frames: int, stride: int,
               max_clips: int | None = None) -> tuple[list[int], np.ndarray]:
    """Clip start frames cut from runs of kept frames, and every frame's final verdict.

    Each run of consecutive kept frames gives clips starting at run start + k * stride that fit in
    the run. With ``max_clips``, that many are taken evenly spread over the video (not the first
    ones, which would favour its opening). Frames in no clip get "run_too_short" (run shorter than a
    clip), "max_clips" (in a clip left out by the cap) or "run_remainder" (the rest of a run).
    """
    final = np.array(reasons, dtype=object, copy=True)
    kept = final == KEPT
    starts: list[int] = []
    t, n = 0, len(final)
    while t < n:
        if not kept[t]:
            t += 1
            continue
        end = t
        while end < n and kept[end]:
            end += 1
        if end - t < frames:
            final[t:end] = "run_too_short"
        else:
            starts.extend(range(t, end - frames + 1, stride))
        t = end
    candidates = starts
    if max_clips is not None and len(starts) > max_clips:
        pick = np.unique(np.round(np.linspace(0, len(starts) - 1, max_clips)).astype(int))
        starts = [starts[i] for i in pick]
    covered = np.zeros(n, dtype=bool)
    for s in starts:
        covered[s:s + frames] = True
    capped = np.zeros(n, dtype=bool)
    for s in candidates:
        capped[s:s + frames] = True
    final[kept & ~covered & capped] = "max_clips"
    final[kept & ~covered & ~capped & (final == KEPT)] = "run_remainder"
    return starts, final


@dataclass(frozen=True)
class CropBox:
    """An integer pixel rectangle of the source frame; may reach outside it (edge-padded there)."""

    x0: int
    y0: int
    width: int
    height: int

    def as_list(self) -> list[int]:
        """[x0, y0, width, height]."""
        return [self.x0, self.y0, self.width, self.height]


def _place(center: float, size: int, limit: int) -> int:
    """Left/top of a span of ``size`` around ``center``, moved inside [0, limit) when it fits."""
    start = int(round(center - size / 2.0))
    if size <= limit:
        return min(max(start, 0), limit - size)
    return int(round((limit - size) / 2.0))  # larger than the frame: centred, padded on both sides


def crop_box(kp: np.ndarray, frame_h: int, frame_w: int, out_h: int, out_w: int, margin: float,
             min_score: float) -> CropBox:
    """One crop of aspect out_w:out_h holding the clip's face, upper body and hands (T, 133, 3).

    The pose box (union over the clip's frames) is grown by ``margin``; where that no longer fits in
    the frame the crop shrinks towards the tight box before any padding is needed, because
    edge-padded bands are worse training pixels than a tighter framing.
    """
    pts = np.asarray(kp, dtype=np.float64)[:, CROP_POINTS].reshape(-1, 3)
    pts = pts[pts[:, 2] >= min_score, :2]
    if len(pts) == 0:
        raise ValueError("crop_box: no upper-body, face or hand point above the score threshold")
    (x1, y1), (x2, y2) = pts.min(0), pts.max(0) + 1.0  # +1: the last point's pixel is inside
    aspect = out_w / out_h
    tight_w = max(x2 - x1, (y2 - y1) * aspect, 1.0)
    fit_w = min(frame_w, frame_h * aspect)  # the widest crop of this aspect inside the frame
    crop_w = max(min(tight_w * margin, fit_w), tight_w)
    cw = max(int(round(crop_w)), 1)
    ch = max(int(round(cw / aspect)), 1)
    return CropBox(_place((x1 + x2) / 2.0, cw, frame_w), _place((y1 + y2) / 2.0, ch, frame_h), cw, ch)


def crop_resize(frame: np.ndarray, box: CropBox, out_h: int, out_w: int) -> np.ndarray:
    """The box of one frame (H, W, 3) uint8, edge-padded where outside, resized to (out_h, out_w, 3)."""
    H, W = frame.shape[:2]
    if box.x0 >= 0 and box.y0 >= 0 and box.x0 + box.width <= W and box.y0 + box.height <= H:
        region = frame[box.y0:box.y0 + box.height, box.x0:box.x0 + box.width]
    else:
        ys = np.clip(np.arange(box.y0, box.y0 + box.height), 0, H - 1)
        xs = np.clip(np.arange(box.x0, box.x0 + box.width), 0, W - 1)
        region = frame[ys[:, None], xs[None, :]]
    if region.shape[:2] == (out_h, out_w):
        return np.ascontiguousarray(region)
    x = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None].float()
    # Antialiasing matters: crops are usually 2-4x the output side and plain bilinear would alias.
    y = TF.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=True)
    return y[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def transform_keypoints(kp: np.ndarray, box: CropBox, out_h: int, out_w: int) -> np.ndarray:
    """Keypoints (..., 133, 3) from source pixels to the resized crop's pixels; scores kept."""
    out = np.array(kp, dtype=np.float32, copy=True)
    sx, sy = out_w / box.width, out_h / box.height
    out[..., 0] = (out[..., 0] - box.x0 + 0.5) * sx - 0.5
    out[..., 1] = (out[..., 1] - box.y0 + 0.5) * sy - 0.5
    out[out[..., 2] <= 0] = 0.0  # missing stays (0, 0, 0), as PoseSequence spells it
    return out


def clip_audio(mono: np.ndarray | None, rate: int, start_s: float, num_samples: int) -> np.ndarray:
    """``num_samples`` of mono audio from ``start_s`` seconds, zero-padded past the end (zeros if None)."""
    out = np.zeros(num_samples, dtype=np.float32)
    if mono is None:
        return out
    a = int(round(start_s * rate))
    piece = np.asarray(mono[a:a + num_samples], dtype=np.float32)
    out[:len(piece)] = piece
    return out
