"""Reference body restoration: the reference photo's torso, arms and hands, moved onto every frame's pose.

The embedded models draw the body as a smeared blob (their small VAE and DiT lose a shirt's edges and a thin
limb's shape), so a gesture does not show. The keypoints say where each frame's shoulders, hips, elbows,
wrists and hand points are, and the reference photo shows what the body looks like. So every frame gets:
- the reference torso (shoulders to hips, or downwards from the shoulders when the hips are out of the
  picture), moved by the affine map of those four points. What the reference's own arms and hands cover of
  it is filled once from the nearest torso pixel, so an arm that moves away leaves the shirt, not its ghost;
- for each visible bone (shoulder-elbow, elbow-wrist), the reference's pixels around that bone moved rigidly
  along it: stretched along the bone with its length (an arm pointing at the camera looks shorter), across
  it with the body's scale (it does not get thinner);
- each hand, the reference hand moved by the least-squares similarity of its visible points.
Layers go torso, forearm, upper arm, hand, each with a one-pixel anti-aliased edge; the neck, and whatever
the body uncovers, stay the model's (the background restorer and the face restorer do theirs).

A part is restored only where its keypoints are visible in the reference and in the frame, and nothing
without both of the reference's shoulders (they set the body's scale). A post-process of the decoded
frames, on by default for the embedded models only (their schedule's ``body_restore``); a model that draws
its own body has no need of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .pose import layout as L
from .pose.regions import convex_hull
from .restoration import check_frames, check_reference, sample_reference

# half an arm's thickness as a share of the shoulder width (pose.regions' arm capsules; an adult upper arm is
# about 9-10 cm across on 38-41 cm shoulders): a little more than a forearm, so its outline comes along
ARM_RADIUS = 0.12
HAND_MARGIN = 0.25  # the hand's outline beyond its points' hull, as a share of its size (wrist to middle knuckle)
MIN_HAND_POINTS = 5  # points seen in both the reference and the frame needed to place a hand
TORSO_DOWN = 1.5    # without both hips the torso runs this many shoulder widths down (as pose.regions' body)
# forearm, then upper arm (over the forearm at the elbow), per side; the hands go over both arms
BONES = ((L.L_ELBOW, L.L_WRIST), (L.L_SHOULDER, L.L_ELBOW), (L.R_ELBOW, L.R_WRIST), (L.R_SHOULDER, L.R_ELBOW))
HANDS = (np.asarray(L.LEFT_HAND), np.asarray(L.RIGHT_HAND))


def _perp(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def _segment_distance(pts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(pts - a - t[:, None] * ab, axis=1)


def _hull_distance(pts: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """Distance from each point (N, 2) to a counter-clockwise convex polygon (0 inside)."""
    if len(hull) == 1:
        return np.linalg.norm(pts - hull[0], axis=1)
    a, b = hull, np.roll(hull, -1, axis=0)
    d = np.min([_segment_distance(pts, p, q) for p, q in zip(a, b, strict=True)], axis=0)
    if len(hull) >= 3:
        edge = b - a
        rel = pts[:, None, :] - a[None]
        inside = (edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0] >= 0).all(1)
        d[inside] = 0.0
    return d


def torso_points(kp: np.ndarray, hips: bool) -> np.ndarray:
    """The torso's corners (4, 2): both shoulders, then both hips or the shoulders moved TORSO_DOWN widths down."""
    ls, rs = kp[L.L_SHOULDER, :2], kp[L.R_SHOULDER, :2]
    if hips:
        return np.stack([ls, rs, kp[L.L_HIP, :2], kp[L.R_HIP, :2]])
    down = _perp(ls - rs)
    down = down if down[1] >= 0 else -down   # away from the head: down the picture, tilted with the shoulders
    return np.stack([ls, rs, ls + TORSO_DOWN * down, rs + TORSO_DOWN * down])


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """The least-squares affine map (2, 3) taking points dst (N, 2) to src; None when they are degenerate."""
    a = np.concatenate([dst, np.ones((len(dst), 1))], axis=1)
    if np.linalg.matrix_rank(a, tol=1e-6 * max(1.0, float(np.abs(dst).max()))) < 3:
        return None
    return np.linalg.lstsq(a, src, rcond=None)[0].T


Box = tuple[int, int, int, int]  # x0, y0, x1, y1: pixel columns x0..x1-1 and rows y0..y1-1


def _box(lo: np.ndarray, hi: np.ndarray, pad: float, hw: tuple[int, int]) -> Box | None:
    """Pixel box (x0, y0, x1, y1) around lo..hi grown by pad, clipped to the frame; None when empty."""
    x0, y0 = (max(int(np.floor(v - pad)), 0) for v in lo)
    x1 = min(int(np.ceil(hi[0] + pad)) + 1, hw[1])
    y1 = min(int(np.ceil(hi[1] + pad)) + 1, hw[0])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


@dataclass
class BodyRestorer:
    """Moves the reference image's torso, arms and hands onto frames, given each frame's WholeBody keypoints."""

    reference: np.ndarray      # (H, W, 3) uint8, the size of the frames
    ref_keypoints: np.ndarray  # (133, 3) the reference image's pose, in its pixels
    min_score: float = 0.3
    frames_restored: int = 0   # frames with at least one part restored
    parts_restored: int = 0    # torsos, arm bones and hands restored over all frames
    _ref_kp: np.ndarray = field(init=False, repr=False)
    _ref_f32: np.ndarray = field(init=False, repr=False)
    _torso_f32: np.ndarray = field(init=False, repr=False)  # the reference without its arms and hands over the torso
    _shoulders: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        ref, kp = check_reference(self.reference, self.ref_keypoints, "body restore")
        self._ref_f32 = ref.astype(np.float32)
        self._ref_kp = kp
        self._shoulders = self._shoulder_width(kp)
        self._torso_f32 = self._clear_torso() if self.usable else self._ref_f32

    def _clear_torso(self) -> np.ndarray:
        """The reference with what its arms and hands cover of the torso filled from the nearest torso pixel."""
        from scipy import ndimage

        hw = self.reference.shape[:2]
        kp, ok = self._ref_kp, self._visible(self._ref_kp)
        limbs = np.zeros(hw, dtype=bool)
        for (x0, y0, x1, y1), _, alpha in self._limb_layers(kp, kp, ok, 1.0, hw):
            limbs[y0:y1, x0:x1] |= alpha.reshape(y1 - y0, x1 - x0) > 0
        torso = np.zeros(hw, dtype=bool)
        corners = torso_points(kp, bool(ok[[L.L_HIP, L.R_HIP]].all()))
        box = _box(corners.min(0), corners.max(0), 0.0, hw)
        if box is not None:
            x0, y0, x1, y1 = box
            torso[y0:y1, x0:x1] = (_hull_distance(_pixels(box), convex_hull(corners)) == 0).reshape(y1 - y0, x1 - x0)
        source = torso & ~limbs
        if not source.any():
            return self._ref_f32
        nearest = ndimage.distance_transform_edt(~source, return_distances=False, return_indices=True)
        out = self._ref_f32.copy()
        out[limbs] = self._ref_f32[nearest[0][limbs], nearest[1][limbs]]
        return out

    @property
    def usable(self) -> bool:
        """Whether the reference shows both shoulders (they set the arms' thickness)."""
        return self._shoulders > 0

    def summary(self) -> str:
        """One line for the user: what the restoration did."""
        if not self.usable:
            return ("body restore: nothing to restore, the reference pose has no shoulders (score >= "
                    f"{self.min_score:g}); the frames are the model's")
        return f"body restore: {self.parts_restored} parts (torso, arm bones, hands) in {self.frames_restored} frames"

    def _visible(self, kp: np.ndarray) -> np.ndarray:
        s = kp[:, 2]
        return np.isfinite(kp).all(1) & (s > 0) & (s >= self.min_score)

    def _shoulder_width(self, kp: np.ndarray) -> float:
        if not self._visible(kp)[[L.L_SHOULDER, L.R_SHOULDER]].all():
            return 0.0
        return float(np.hypot(*(kp[L.L_SHOULDER, :2] - kp[L.R_SHOULDER, :2])))

    def restore(self, frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 with the reference torso, arms and hands over each frame's visible parts."""
        frames, keypoints = check_frames(frames, keypoints, self.reference, "body restore")
        out = frames.copy()
        if not self.usable:
            return out
        hw = frames.shape[1:3]
        for t in range(len(frames)):
            layers = self._layers(keypoints[t], hw)
            if not layers:
                continue
            frame = out[t].astype(np.float32)
            for source, (x0, y0, x1, y1), src_xy, alpha in layers:
                warped = sample_reference(source, src_xy).reshape(y1 - y0, x1 - x0, 3)
                a = alpha.reshape(y1 - y0, x1 - x0, 1)
                frame[y0:y1, x0:x1] = a * warped + (1.0 - a) * frame[y0:y1, x0:x1]
            out[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
            self.frames_restored += 1
            self.parts_restored += len(layers)
        return out

    def _layers(self, kp: np.ndarray, hw: tuple[int, int]) -> list[tuple[np.ndarray, Box, np.ndarray, np.ndarray]]:
        """One frame's restored parts, bottom first: (source image, box, where its pixels (N, 2) read the source,
        alpha (N,))."""
        ref = self._ref_kp
        ok = self._visible(kp) & self._visible(ref)
        width = self._shoulder_width(kp)
        scale = width / self._shoulders if width > 0 else 1.0  # the body's size in this frame over the reference's
        layers = []
        if ok[[L.L_SHOULDER, L.R_SHOULDER]].all():
            torso = self._torso(kp, ok, scale, hw)
            if torso is not None:
                layers.append((self._torso_f32, *torso))
        layers += [(self._ref_f32, *layer) for layer in self._limb_layers(kp, ref, ok, scale, hw)]
        return layers

    def _torso(self, kp: np.ndarray, ok: np.ndarray, scale: float, hw: tuple[int, int]):
        hips = bool(ok[[L.L_HIP, L.R_HIP]].all())
        dst = torso_points(kp, hips)
        m = _affine(torso_points(self._ref_kp, hips), dst)
        if m is None:
            return None
        margin = ARM_RADIUS * self._shoulders * scale  # the shirt reaches over the shoulder points
        box = _box(dst.min(0), dst.max(0), margin + 1.0, hw)
        if box is None:
            return None
        pts = _pixels(box)
        alpha = np.clip(margin + 0.5 - _hull_distance(pts, convex_hull(dst)), 0.0, 1.0)
        return box, pts @ m[:, :2].T + m[:, 2], alpha

    def _limb_layers(self, kp: np.ndarray, ref: np.ndarray, ok: np.ndarray, scale: float, hw: tuple[int, int]
                     ) -> Iterator[tuple[Box, np.ndarray, np.ndarray]]:
        """The arm bones' and hands' parts of one frame: (box, reference coordinates (N, 2), alpha (N,))."""
        radius = ARM_RADIUS * self._shoulders * scale
        for i, j in BONES:
            if ok[i] and ok[j]:
                layer = self._bone(kp[i, :2], kp[j, :2], ref[i, :2], ref[j, :2], radius, scale, hw)
                if layer is not None:
                    yield layer
        for idx in HANDS:
            both = idx[ok[idx]]
            if len(both) >= MIN_HAND_POINTS:
                wrist, knuckle = idx[0], idx[9]  # the hand's size: wrist to middle knuckle, else its points' extent
                pts = kp[both, :2]
                size = (float(np.hypot(*(kp[knuckle, :2] - kp[wrist, :2]))) if ok[wrist] and ok[knuckle] else
                        0.5 * float(np.hypot(*(pts.max(0) - pts.min(0)))))
                layer = self._hand(pts, ref[both, :2], size, hw)
                if layer is not None:
                    yield layer

    def _bone(self, a: np.ndarray, b: np.ndarray, a0: np.ndarray, b0: np.ndarray, radius: float, scale: float,
              hw: tuple[int, int]):
        length, length0 = float(np.hypot(*(b - a))), float(np.hypot(*(b0 - a0)))
        if length < 1e-6 or length0 < 1e-6 or radius <= 0:
            return None
        box = _box(np.minimum(a, b), np.maximum(a, b), radius + 1.0, hw)
        if box is None:
            return None
        pts = _pixels(box)
        e = (b - a) / length
        rel = pts - a
        along = rel @ e / length              # 0 at a, 1 at b
        across = rel @ _perp(e) / scale       # in the reference's pixels
        src = a0 + along[:, None] * (b0 - a0) + across[:, None] * _perp((b0 - a0) / length0)
        alpha = np.clip(radius + 0.5 - _segment_distance(pts, a, b), 0.0, 1.0)
        return box, src, alpha

    def _hand(self, dst: np.ndarray, src: np.ndarray, size: float, hw: tuple[int, int]):
        from .face_restore import similarity

        a, md, ms = similarity(src, dst)
        if abs(a) < 1e-6:
            return None
        margin = max(HAND_MARGIN * size, 1.0)
        box = _box(dst.min(0), dst.max(0), margin + 1.0, hw)
        if box is None:
            return None
        pts = _pixels(box)
        z = ((pts[:, 0] - md[0]) + 1j * (pts[:, 1] - md[1])) / a
        src_xy = np.stack([z.real + ms[0], z.imag + ms[1]], -1)
        alpha = np.clip(margin + 0.5 - _hull_distance(pts, convex_hull(dst)), 0.0, 1.0)
        return box, src_xy, alpha


def _pixels(box: Box) -> np.ndarray:
    """Pixel centres (N, 2) x, y of a box, row by row."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)
