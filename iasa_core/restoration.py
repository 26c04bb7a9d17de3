"""What the reference restorations (``face_restore``, ``background_restore``, ``body_restore``) share: their
switches as the command line and the nodes show them, the checks of their inputs, which keypoints count and the
body's scale, pixel boxes, and reading the reference. Light: the command line imports it."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .pose import layout as L

# auto is the model's own setting (its schedule's face_restore / background_restore / body_restore: on for the
# embedded models)
RESTORE_CHOICES = {"auto": None, "on": True, "off": False}
RESTORE_HELP = {
    "face_restore": "warp the reference photo's face onto every frame (the head follows the face points, the "
                    "mouth opens with the lips'): auto = the model's own setting, on for the embedded models, "
                    "whose small VAE loses a face's detail; off = the model's frames untouched",
    "background_restore": "put the reference photo's own background back wherever the person is not (a still "
                          "camera): auto = the model's own setting, on for the embedded models, which redraw "
                          "it mottled; off = the model's frames untouched",
    "body_restore": "move the reference photo's head (hair and outline), torso, arms and hands onto every frame's "
                    "pose (the head and each hand by their points, the torso by shoulders and hips, each arm "
                    "bone rigidly): auto = the model's own setting, on for the embedded models, which smear the "
                    "body; off = the model's frames untouched",
}
RESTORE_KEYS = tuple(RESTORE_HELP)  # the GenerateOptions fields, flags (--face-restore ...) and node inputs


def restore_setting(value: str, name: str) -> bool | None:
    """``auto`` / ``on`` / ``off`` -> None (the model's own), True, False; anything else is a clear error."""
    if value not in RESTORE_CHOICES:
        raise ValueError(f"{name} must be one of {', '.join(RESTORE_CHOICES)}; got {value!r}")
    return RESTORE_CHOICES[value]


def add_restore_flags(parser: argparse.ArgumentParser) -> None:
    """``--face-restore``, ``--background-restore`` and ``--body-restore`` (auto / on / off) on a command."""
    for key, text in RESTORE_HELP.items():
        parser.add_argument("--" + key.replace("_", "-"), choices=tuple(RESTORE_CHOICES), default="auto", help=text)


def restore_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The restoration flags as ``GenerateOptions`` fields (None = the model's own setting)."""
    return {key: restore_setting(getattr(args, key), "--" + key.replace("_", "-")) for key in RESTORE_HELP}


def nothing_restored(what: str, missing: str) -> str:
    """A restorer's summary line when the reference lacks what it needs: ``missing`` names that part."""
    return f"{what}: nothing to restore, the reference pose has {missing}; the frames are the model's"


def no_shoulders(min_score: float) -> str:
    """What the background and body restorers miss without both shoulders (``nothing_restored``)."""
    return f"no shoulders (score >= {min_score:g})"


def visible(kp: np.ndarray, min_score: float) -> np.ndarray:
    """(133,) bool: which of a pose's (133, 3) keypoints a restorer may use (finite, scored, at least min_score)."""
    s = kp[:, 2]
    return np.isfinite(kp).all(1) & (s > 0) & (s >= min_score)


def shoulder_width(kp: np.ndarray, min_score: float) -> float:
    """The distance between the shoulders of a pose (133, 3), which sets the restorers' scale; 0 without both."""
    if not visible(kp, min_score)[[L.L_SHOULDER, L.R_SHOULDER]].all():
        return 0.0
    return float(np.hypot(*(kp[L.L_SHOULDER, :2] - kp[L.R_SHOULDER, :2])))


Box = tuple[int, int, int, int]  # x0, y0, x1, y1: pixel columns x0..x1-1 and rows y0..y1-1


def pixel_box(lo: np.ndarray, hi: np.ndarray, pad: float, hw: tuple[int, int]) -> Box | None:
    """The pixels around points lo..hi (x, y) grown by pad, clipped to a (H, W) frame; None when empty."""
    x0, y0 = (max(int(np.floor(v - pad)), 0) for v in lo)
    x1 = min(int(np.ceil(hi[0] + pad)) + 1, hw[1])
    y1 = min(int(np.ceil(hi[1] + pad)) + 1, hw[0])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def box_pixels(box: Box) -> np.ndarray:
    """Pixel centres (N, 2) x, y of a box, row by row."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)


def check_reference(reference: np.ndarray, ref_keypoints: np.ndarray, what: str
                    ) -> tuple[np.ndarray, np.ndarray]:
    """A restorer's reference image (H, W, 3) uint8 and its pose (133, 3) as float64, or a clear error."""
    ref = np.asarray(reference)
    if ref.ndim != 3 or ref.shape[2] != 3 or ref.dtype != np.uint8:
        raise ValueError(f"{what}: the reference image must be (height, width, 3) uint8; got {ref.shape} {ref.dtype}")
    kp = np.asarray(ref_keypoints, dtype=np.float64)
    if kp.shape != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"{what}: the reference keypoints must be ({L.NUM_KEYPOINTS}, 3) COCO-WholeBody x, y, "
                         f"score; got {kp.shape}")
    return ref, kp


def check_frames(frames: np.ndarray, keypoints: np.ndarray, reference: np.ndarray, what: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 the reference's size and their keypoints (T, 133, 3) as float64, or a clear error."""
    frames = np.asarray(frames)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[1:] != reference.shape or frames.dtype != np.uint8:
        shape = ", ".join(map(str, reference.shape))
        raise ValueError(f"{what}: frames must be (T, {shape}) uint8 like the reference; got {frames.shape} "
                         f"{frames.dtype}")
    if keypoints.shape != (len(frames), L.NUM_KEYPOINTS, 3):
        raise ValueError(f"{what}: {len(frames)} frames need keypoints ({len(frames)}, {L.NUM_KEYPOINTS}, 3); "
                         f"got {keypoints.shape}")
    return frames, keypoints


def sample_reference(reference: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """A float32 image (H, W, C) read bilinearly at points (N, 2) x, y (its edge repeated outside) -> (N, C)."""
    h, w, c = reference.shape
    x = np.clip(xy[:, 0], 0.0, w - 1.0)
    y = np.clip(xy[:, 1], 0.0, h - 1.0)
    # the cell's top-left pixel, kept one short of the last row and column so its neighbours exist
    x0 = np.minimum(x.astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(y.astype(np.int64), max(h - 2, 0))
    fx, fy = (x - x0)[:, None].astype(np.float32), (y - y0)[:, None].astype(np.float32)  # float32: 2x quicker
    flat = reference.reshape(-1, c)
    i = y0 * w + x0
    right, down = min(w - 1, 1), w if h > 1 else 0
    # the four neighbours in one gather (np.take: twice as quick as four fancy indexings)
    q = np.take(flat, np.stack([i, i + right, i + down, i + down + right]), axis=0)
    gx = 1.0 - fx
    top = q[0] * gx + q[1] * fx
    bottom = q[2] * gx + q[3] * fx
    return (top * (1.0 - fy) + bottom * fy).astype(np.float32)
