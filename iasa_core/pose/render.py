"""Skeleton images for pose conditioning (OpenPose / DWPose colour convention), drawn with numpy.

What is drawn, in this order, on a black canvas (the published convention of DWPose-style pose
images, which UniAnimate-DiT's pose encoder was trained on; the drawing code here is our own):

* body: 17 limbs between OpenPose-18 points (WholeBody body points reordered, the neck being the
  midpoint of the shoulders), each a filled ellipse over the segment, ``stick_width`` its half
  minor axis, in the limb's colour at 60 % brightness; then the 18 joints as discs of
  ``point_radius`` in full colour;
* hands (left, then right): 20 edges, 2 px wide at 512, coloured around the HSV hue wheel
  (edge i has hue i/20), then the 21 joints as blue discs;
* face (off by default; UniAnimate's pose images have none): 68 white dots;
* mouth (off by default; our own addition): a filled ellipse over the outer lips whose colour runs from
  ``MOUTH_CLOSED_COLOR`` to ``MOUTH_OPEN_COLOR`` with the mouth's opening (inner-lip gap over mouth width,
  full at ``MOUTH_FULL_OPEN``). At 128 px the lips span ~6 px and open by 0-3 px, so their dots merge into
  one blob whatever the mouth does; a brightness is read at any size.

Sizes scale with the short side of the output canvas (the values below are for 512 px). A point
is drawn when its score is at least ``min_score`` (and positive); a limb or edge needs both ends.
Pixels are covered when their centre lies inside the shape (no anti-aliasing: the colours stay
exact, as in the training images). ``bgr=True`` swaps R and B of the whole image, which is what
UniAnimate-trained weights expect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import layout as L
from .sequence import PoseSequence

# OpenPose-18 body limbs (0 nose, 1 neck, 2 r_sho, 3 r_elb, 4 r_wri, 5 l_sho, 6 l_elb, 7 l_wri,
# 8 r_hip, 9 r_knee, 10 r_ank, 11 l_hip, 12 l_knee, 13 l_ank, 14 r_eye, 15 l_eye, 16 r_ear, 17 l_ear).
BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
# Colour i belongs to OpenPose point i and to limb i (RGB).
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
LIMB_BRIGHTNESS = 0.6
# The colour a limb has on the image (RGB): its point colour at 60 %.
BODY_LIMB_COLORS = tuple(tuple(int(c * LIMB_BRIGHTNESS) for c in BODY_COLORS[i]) for i in range(len(BODY_LIMBS)))

# Hand: 0 wrist, then thumb, index, middle, ring, pinky (4 points each, base to tip).
HAND_EDGES = tuple((0 if j == 0 else 1 + 4 * f + j - 1, 1 + 4 * f + j) for f in range(5) for j in range(4))


def _hue_color(h: float) -> tuple[int, int, int]:
    """Fully saturated, full value colour of hue h in [0, 1), RGB 0..255."""
    i = int(h * 6.0)
    f = h * 6.0 - i
    q, t = 1.0 - f, 1.0 - (1.0 - f)
    rgb = ((1, t, 0), (q, 1, 0), (0, 1, t), (0, q, 1), (t, 0, 1), (1, 0, q))[i % 6]
    return tuple(int(round(c * 255.0)) for c in rgb)


HAND_EDGE_COLORS = tuple(_hue_color(i / len(HAND_EDGES)) for i in range(len(HAND_EDGES)))
HAND_POINT_COLOR = (0, 0, 255)
_HAND_FROM = np.array([i for i, _ in HAND_EDGES])
_HAND_TO = np.array([j for _, j in HAND_EDGES])
_HAND_COLORS = np.array(HAND_EDGE_COLORS, dtype=np.uint8)
FACE_POINT_COLOR = (255, 255, 255)
MOUTH_CLOSED_COLOR = (0, 64, 32)
MOUTH_OPEN_COLOR = (0, 255, 128)
MOUTH_FULL_OPEN = 0.4  # inner-lip gap / mouth width at which the patch is fully bright

# Sizes at a 512 px short side.
_REF_SIDE = 512.0
_STICK_WIDTH = 4.0      # body limb ellipse half minor axis
_POINT_RADIUS = 4.0     # body and hand joints
_HAND_LINE = 2.0        # hand edge width, as a fraction of 4 px: stick_width / 2
_FACE_RADIUS = 3.0      # face dots: point_radius * 3/4
_MIN_HALF_WIDTH = 0.5   # below this, lines would break up into isolated pixels
_MIN_RADIUS = 1.0


@dataclass
class RenderStyle:
    """What to draw and how. Sizes are in output pixels; None scales them with the canvas."""

    body: bool = True
    hands: bool = True
    face: bool = False
    mouth: bool = False
    min_score: float = 0.3         # points below are not drawn, limbs need both ends
    bgr: bool = False              # swap R and B (UniAnimate-trained weights expect this)
    stick_width: float | None = None   # body limb half width; None: 4 px at a 512 px short side
    point_radius: float | None = None  # joint disc radius; None: 4 px at a 512 px short side

    def __post_init__(self) -> None:
        if isinstance(self.min_score, bool) or not isinstance(self.min_score, (int, float, np.number)) \
                or not math.isfinite(self.min_score) or self.min_score < 0:
            raise ValueError(f"RenderStyle.min_score: expected a finite number >= 0, got {self.min_score!r}")
        for name in ("stick_width", "point_radius"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float, np.number))
                                  or not math.isfinite(v) or v <= 0):
                raise ValueError(f"RenderStyle.{name}: expected a positive number of pixels or None, got {v!r}")

    def sizes(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(limb half width, joint radius, hand edge half width, face dot radius) in pixels."""
        s = min(height, width) / _REF_SIDE
        stick = float(self.stick_width) if self.stick_width is not None else _STICK_WIDTH * s
        radius = float(self.point_radius) if self.point_radius is not None else _POINT_RADIUS * s
        hand_half = stick * (_HAND_LINE / 2.0) / _STICK_WIDTH
        face_r = radius * _FACE_RADIUS / _POINT_RADIUS
        return (max(stick, _MIN_HALF_WIDTH), max(radius, _MIN_RADIUS),
                max(hand_half, _MIN_HALF_WIDTH), max(face_r, _MIN_RADIUS))


# ---------------------------------------------------------------------- rasterising


def _window(img: np.ndarray, cx: float, cy: float, ex: float, ey: float):
    """Canvas window around (cx, cy) with half extents (ex, ey): (x0, y0, xs, ys) or None."""
    H, W = img.shape[:2]
    x0, x1 = max(math.ceil(cx - ex), 0), min(math.floor(cx + ex) + 1, W)
    y0, y1 = max(math.ceil(cy - ey), 0), min(math.floor(cy + ey) + 1, H)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32) - np.float32(cx)
    ys = np.arange(y0, y1, dtype=np.float32) - np.float32(cy)
    return x0, y0, xs, ys


def _ellipse(img: np.ndarray, p: np.ndarray, q: np.ndarray, half_width: float, color) -> None:
    """Filled ellipse whose major axis is the segment p-q and whose half minor axis is half_width."""
    cx, cy = (p[0] + q[0]) * 0.5, (p[1] + q[1]) * 0.5
    dx, dy = q[0] - p[0], q[1] - p[1]
    length = math.hypot(dx, dy)
    a = max(length * 0.5, 0.5)
    b = half_width
    ux, uy = (dx / length, dy / length) if length > 1e-9 else (1.0, 0.0)
    win = _window(img, cx, cy, math.sqrt((a * ux) ** 2 + (b * uy) ** 2), math.sqrt((a * uy) ** 2 + (b * ux) ** 2))
    if win is None:
        return
    x0, y0, xs, ys = win
    ia, ib = 1.0 / (a * a), 1.0 / (b * b)
    A = ux * ux * ia + uy * uy * ib
    B = 2.0 * ux * uy * (ia - ib)
    C = uy * uy * ia + ux * ux * ib
    mask = (A * xs * xs + 0.0)[None, :] + (B * xs)[None, :] * ys[:, None] + (C * ys * ys)[:, None] <= 1.0
    img[y0:y0 + len(ys), x0:x0 + len(xs)][mask] = color


def _capsule(img: np.ndarray, p: np.ndarray, q: np.ndarray, half_width: float, color) -> None:
    """Pixels within half_width of the segment p-q (a line with round ends)."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    ex, ey = abs(dx) * 0.5 + half_width, abs(dy) * 0.5 + half_width
    cx, cy = (p[0] + q[0]) * 0.5, (p[1] + q[1]) * 0.5
    win = _window(img, cx, cy, ex, ey)
    if win is None:
        return
    x0, y0, xs, ys = win
    # Coordinates relative to the midpoint; t in [-1/2, 1/2] along the segment.
    l2 = dx * dx + dy * dy
    if l2 < 1e-12:
        d2 = (xs * xs)[None, :] + (ys * ys)[:, None]
    else:
        t = np.clip((xs * (dx / l2))[None, :] + (ys * (dy / l2))[:, None], -0.5, 0.5)
        rx = xs[None, :] - t * dx
        ry = ys[:, None] - t * dy
        d2 = rx * rx + ry * ry
    mask = d2 <= half_width * half_width
    img[y0:y0 + len(ys), x0:x0 + len(xs)][mask] = color


def _capsules(img: np.ndarray, starts: np.ndarray, ends: np.ndarray, half_width: float, colors: np.ndarray) -> None:
    """``_capsule`` for segments (N, 2) -> (N, 2) drawn in order (later ones on top), bit for bit, in one pass.

    A hand has 20 edges of a few pixels each: drawn one by one, Python's overhead was most of a pose frame's
    drawing time. Each segment keeps its own window and float32 arithmetic, so every pixel test is the same."""
    if len(starts) == 0:
        return
    H, W = img.shape[:2]
    d = ends - starts
    ex, ey = np.abs(d[:, 0]) * 0.5 + half_width, np.abs(d[:, 1]) * 0.5 + half_width
    cx, cy = (starts[:, 0] + ends[:, 0]) * 0.5, (starts[:, 1] + ends[:, 1]) * 0.5
    x0 = np.maximum(np.ceil(cx - ex), 0).astype(np.int64)
    x1 = np.minimum(np.floor(cx + ex) + 1, W).astype(np.int64)
    y0 = np.maximum(np.ceil(cy - ey), 0).astype(np.int64)
    y1 = np.minimum(np.floor(cy + ey) + 1, H).astype(np.int64)
    live = (x0 < x1) & (y0 < y1)
    if not live.any():
        return
    bx0, bx1, by0, by1 = x0[live].min(), x1[live].max(), y0[live].min(), y1[live].max()
    px, py = np.arange(bx0, bx1), np.arange(by0, by1)
    xs = px.astype(np.float32)[None, :] - cx.astype(np.float32)[:, None]   # (N, X), as _window computes them
    ys = py.astype(np.float32)[None, :] - cy.astype(np.float32)[:, None]   # (N, Y)
    l2 = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    point = l2 < 1e-12
    safe = np.where(point, 1.0, l2)
    # _capsule multiplies float32 arrays by Python floats: NumPy casts those to float32 first
    ux, uy = (d[:, 0] / safe).astype(np.float32), (d[:, 1] / safe).astype(np.float32)
    dx, dy = d[:, 0].astype(np.float32), d[:, 1].astype(np.float32)
    t = np.clip((xs * ux[:, None])[:, None, :] + (ys * uy[:, None])[:, :, None], -0.5, 0.5)
    rx = xs[:, None, :] - t * dx[:, None, None]
    ry = ys[:, :, None] - t * dy[:, None, None]
    d2 = rx * rx + ry * ry
    d2[point] = (xs[point] * xs[point])[:, None, :] + (ys[point] * ys[point])[:, :, None]
    mask = d2 <= np.float32(half_width * half_width)
    mask &= ((px >= x0[:, None]) & (px < x1[:, None]))[:, None, :]  # each segment's own window
    mask &= ((py >= y0[:, None]) & (py < y1[:, None]))[:, :, None]
    mask &= live[:, None, None]
    hit = mask.any(0)
    top = len(starts) - 1 - np.argmax(mask[::-1], axis=0)  # the last segment covering each pixel
    iy, ix = np.nonzero(hit)
    img[by0 + iy, bx0 + ix] = colors[top[iy, ix]]


def _disc(img: np.ndarray, c: np.ndarray, radius: float, color) -> None:
    win = _window(img, c[0], c[1], radius, radius)
    if win is None:
        return
    x0, y0, xs, ys = win
    mask = (xs * xs)[None, :] + (ys * ys)[:, None] <= radius * radius
    img[y0:y0 + len(ys), x0:x0 + len(xs)][mask] = color


def _discs(img: np.ndarray, centers: np.ndarray, radius: float, color) -> None:
    """Many discs of one colour at once (their overlap order does not matter)."""
    if len(centers) == 0:
        return
    H, W = img.shape[:2]
    R = int(math.ceil(radius))
    off = np.arange(-R, R + 2)
    base = np.floor(centers).astype(np.int64)                        # (N, 2)
    px = base[:, 0, None] + off[None, :]                             # (N, K)
    py = base[:, 1, None] + off[None, :]
    ddx = (px - centers[:, 0, None]).astype(np.float32)
    ddy = (py - centers[:, 1, None]).astype(np.float32)
    mask = (ddx * ddx)[:, None, :] + (ddy * ddy)[:, :, None] <= radius * radius    # (N, K_y, K_x)
    mask &= ((px >= 0) & (px < W))[:, None, :] & ((py >= 0) & (py < H))[:, :, None]
    n, iy, ix = np.nonzero(mask)
    img[py[n, iy], px[n, ix]] = color


# ---------------------------------------------------------------------- drawing


def _as_keypoints(keypoints) -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints: expected shape ({L.NUM_KEYPOINTS}, 3) (COCO-WholeBody x, y, score), "
                         f"got {kp.shape}")
    return kp


def _check_size(height, width) -> tuple[int, int]:
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name}: expected a positive integer (pixels), got {v!r}")
    return int(height), int(width)


def openpose18(keypoints: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenPose-18 body points (18, 2) and their visibility (18,) from WholeBody (133, 3)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    pts = np.zeros((18, 2), dtype=np.float64)
    vis = np.zeros(18, dtype=bool)
    ok = _visible(kp, min_score)
    for i, wb in enumerate(L.OPENPOSE18_FROM_WHOLEBODY):
        if wb is None:
            continue
        pts[i], vis[i] = kp[wb, :2], ok[wb]
    if ok[L.L_SHOULDER] and ok[L.R_SHOULDER]:
        pts[L.OPENPOSE_NECK] = (kp[L.L_SHOULDER, :2] + kp[L.R_SHOULDER, :2]) * 0.5
        vis[L.OPENPOSE_NECK] = True
    return pts, vis


def _visible(kp: np.ndarray, min_score: float) -> np.ndarray:
    s = kp[:, 2]
    return (s > 0) & (s >= min_score) & np.isfinite(kp).all(axis=1)


def _draw(img: np.ndarray, kp: np.ndarray, style: RenderStyle, sizes) -> None:
    """Draw one person (keypoints already in canvas pixels) onto img (H, W, 3) RGB uint8."""
    stick, radius, hand_half, face_r = sizes
    if style.body:
        pts, vis = openpose18(kp, style.min_score)
        for (i, j), color in zip(BODY_LIMBS, BODY_LIMB_COLORS, strict=True):
            if vis[i] and vis[j]:
                _ellipse(img, pts[i], pts[j], stick, color)
        for i in np.flatnonzero(vis):
            _disc(img, pts[i], radius, BODY_COLORS[i])
    ok = _visible(kp, style.min_score)
    if style.hands:
        for hand in (L.LEFT_HAND, L.RIGHT_HAND):
            idx = np.asarray(hand)
            hp, hv = kp[idx, :2], ok[idx]
            drawn = hv[_HAND_FROM] & hv[_HAND_TO]
            _capsules(img, hp[_HAND_FROM[drawn]], hp[_HAND_TO[drawn]], hand_half, _HAND_COLORS[drawn])
            _discs(img, hp[hv], radius, HAND_POINT_COLOR)
    if style.face:
        idx = np.asarray(L.FACE)
        _discs(img, kp[idx, :2][ok[idx]], face_r, FACE_POINT_COLOR)
    if style.mouth:
        _mouth(img, kp, ok, face_r)


def mouth_opening(kp: np.ndarray) -> float:
    """How open the mouth is: the inner lips' mean vertical gap over the mouth's width (0 closed)."""
    left, right = L.INNER_LIPS[0], L.INNER_LIPS[4]  # the inner corners
    width = float(np.hypot(*(kp[right, :2] - kp[left, :2])))
    upper, lower = (list(p) for p in zip(*L.INNER_LIP_PAIRS, strict=True))
    gap = float(np.mean(kp[lower, 1] - kp[upper, 1]))
    return max(gap, 0.0) / max(width, 1e-6)


def _mouth(img: np.ndarray, kp: np.ndarray, ok: np.ndarray, min_half: float) -> None:
    """The mouth patch (see the module docstring); needs every lip point."""
    idx = np.asarray(L.OUTER_LIPS + L.INNER_LIPS)
    if not ok[idx].all():
        return
    outer = kp[np.asarray(L.OUTER_LIPS), :2]
    lo, hi = outer.min(0), outer.max(0)
    t = min(mouth_opening(kp) / MOUTH_FULL_OPEN, 1.0)
    color = tuple(int(round(c0 + t * (c1 - c0))) for c0, c1 in zip(MOUTH_CLOSED_COLOR, MOUTH_OPEN_COLOR, strict=True))
    cx, cy = (lo + hi) / 2
    ax, ay = max((hi[0] - lo[0]) / 2, min_half), max((hi[1] - lo[1]) / 2, min_half)
    win = _window(img, cx, cy, ax, ay)
    if win is None:
        return
    x0, y0, xs, ys = win
    mask = (xs * xs / (ax * ax))[None, :] + (ys * ys / (ay * ay))[:, None] <= 1.0
    img[y0:y0 + len(ys), x0:x0 + len(xs)][mask] = color


def _scaled(kp: np.ndarray, src_size, height: int, width: int) -> np.ndarray:
    if src_size is None:
        return kp
    sh, sw = _check_size(*src_size)
    if (sh, sw) == (height, width):
        return kp
    out = kp.copy()
    out[:, 0] *= width / sw
    out[:, 1] *= height / sh
    return out


def render_pose_frame(keypoints: np.ndarray, height: int, width: int, style: RenderStyle | None = None, *,
                      src_size: tuple[int, int] | None = None) -> np.ndarray:
    """One skeleton image (height, width, 3) uint8 from WholeBody keypoints (133, 3) in pixels.

    ``src_size=(h, w)`` is the canvas the keypoints were measured on; when it differs from
    (height, width) x and y are scaled independently (as when resizing that image).
    """
    style = style or RenderStyle()
    height, width = _check_size(height, width)
    kp = _scaled(_as_keypoints(keypoints), src_size, height, width)
    img = np.zeros((height, width, 3), dtype=np.uint8)
    _draw(img, kp, style, style.sizes(height, width))
    return img[..., ::-1].copy() if style.bgr else img


def _sequence(poses, height, width):
    """(keypoints (T, 133, 3), src_size or None, height, width) from the render_poses arguments."""
    if (height is None) != (width is None):
        raise ValueError(f"give both height and width or neither, got height={height!r}, width={width!r}")
    if isinstance(poses, PoseSequence):
        kp, src = poses.keypoints, (poses.height, poses.width)
        if height is None:
            height, width = src
    else:
        kp = np.asarray(poses, dtype=np.float64)
        if kp.ndim == 2:
            kp = kp[None]
        if kp.ndim != 3 or kp.shape[1:] != (L.NUM_KEYPOINTS, 3):
            raise ValueError(f"poses: expected a PoseSequence or keypoints of shape (T, {L.NUM_KEYPOINTS}, 3), "
                             f"got {kp.shape}")
        if height is None:
            raise ValueError("poses given as an array carry no canvas size: pass height= and width= (pixels)")
        src = None
    height, width = _check_size(height, width)
    return kp, src, height, width


def render_poses(poses: PoseSequence | np.ndarray, height: int | None = None, width: int | None = None,
                 style: RenderStyle | None = None,
                 progress: Callable[[int, int], object] | None = None) -> np.ndarray:
    """Skeleton video (T, H, W, 3) uint8.

    A PoseSequence is drawn on its own canvas unless height and width are given (coordinates are
    then scaled); an array (T, 133, 3) is taken to be in output pixels and needs height and width.
    ``progress(done, total)`` is called after every frame.
    """
    style = style or RenderStyle()
    kp, src, height, width = _sequence(poses, height, width)
    T = kp.shape[0]
    out = np.zeros((T, height, width, 3), dtype=np.uint8)
    sizes = style.sizes(height, width)
    for t in range(T):
        _draw(out[t], _scaled(np.asarray(kp[t], dtype=np.float64), src, height, width), style, sizes)
        if progress is not None:
            progress(t + 1, T)
    if style.bgr:
        out = np.ascontiguousarray(out[..., ::-1])
    return out


def render_poses_tensor(poses: PoseSequence | np.ndarray, height: int | None = None, width: int | None = None,
                        style: RenderStyle | None = None, progress: Callable[[int, int], object] | None = None,
                        *, dtype=None, device=None):
    """The same images as a torch tensor (3, T, H, W), float 0..255, as the pose encoder takes."""
    import torch

    frames = render_poses(poses, height, width, style, progress)
    t = torch.from_numpy(frames).permute(3, 0, 1, 2)
    return t.to(device=device, dtype=dtype or torch.float32).contiguous()
