"""Reference face restoration: the reference photo's face, warped onto every generated frame's face keypoints.

A small model's VAE cannot carry a face's detail (the embedded VAE turns the bundled character's face into a
blob even on frame 0, the reference itself: eyes, nose and mouth are gone at 27.6 dB). The keypoints say
exactly where each frame's face is and how its mouth opens, and the reference photo holds the face's detail.
So each frame's head gets the reference head warped piecewise-affinely over a triangulation of the 68 face
points (plus the brows raised over the forehead and hair): the head follows the face points, the jaw and lips
follow theirs, so the mouth opens and closes with the speech. A photo with its mouth shut holds no inside of
the mouth, so where a frame's lips part further the gap is drawn: a dark inside in the photo's own lip
colour with the upper teeth in a band under the upper lip, anti-aliased from the inner-lip points. An eye
closing (a blink) keeps its size under lids of the photo's skin, with a dark edge, rather than being
squeezed. A feathered mask blends it into the generated frame; the body, arms and hands stay the model's.

A frame whose face points are not all visible is left as generated, and a frame whose triangulation folds
over on more than a quarter of its area (a head turned towards profile) gets the reference head moved by the
best similarity transform instead.
This is a post-process of the decoded frames, on by default for the embedded models only (their schedule's
``face_restore``); a model whose VAE keeps faces has no need of it and would lose its own expressions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .pose import layout as L
from .pose.render import mouth_opening
from .restoration import check_frames, check_reference, nothing_restored, sample_reference, visible

FACE = np.asarray(L.FACE)
BROWS = np.asarray(range(L.FACE[0] + 17, L.FACE[0] + 27))  # the 68-point face's 17..26
CHIN = L.FACE[0] + 8
FOREHEAD_RAISE = 0.6  # the brows moved up by this share of the chin-to-brows distance cover forehead and hair
HAIR_MARGIN = 0.3     # hair and ears reach this share of the chin-to-brows distance beyond the head points' hull
FEATHER = 0.04        # the blend's Gaussian sigma as a share of that distance (at least MIN_FEATHER px)
MIN_FEATHER = 0.7
FOLD_LIMIT = 0.25     # share of the mesh's area flipped over beyond which only the similarity is used
GROW = 1              # pixels the mesh mask is grown by before the feather, so the outline itself is pasted
# The drawn inside of the mouth (the reference's mouth shut). Sizes are shares of the inner lips' width.
MOUTH_OPEN = 0.05     # mouth_opening() from which lips count as apart: the photo's own gap, a frame's drawn one
MOUTH_GROW = 0.05     # the gap's outline grown by this much: the lips' shaded inner edge belongs to the gap
TEETH_SHARE = 0.4     # the upper teeth: a band under the upper lip, this share of the mean gap tall,
TEETH_MAX = 0.2       # at most this share of the width
CAVITY_SHADE = 0.45   # the inside: the photo's lip colour this dark
TEETH_COLOUR = (240.0, 240.0, 235.0)
SUPERSAMPLE = 4       # coverage samples per pixel and axis
# A closing eye (a blink): the mesh would squeeze the photo's open eye into the narrower lids (a half-open stare);
# instead the eye keeps its size and the lids slide over it.
EYES = (np.arange(36, 42), np.arange(42, 48))  # 68-point indices: corner, upper lid (2), corner, lower lid (2)
BROWS_ABOVE = ((19, 20), (23, 24))  # the brow points over each upper lid: the lid's skin lies between
LID_CLOSED = 0.5      # an eye open less than this share of the photo's is closing
LID_GROW = 0.1        # the photo's eye outline grown by this share of the eye's width (its lashes go under too)
LID_EDGE = 0.08       # the closed lid's dark edge: half its thickness, as a share of the eye's width
_F0 = L.FACE[0]
INNER_LIPS = np.asarray(L.INNER_LIPS) - _F0  # indices into the 68 face points
UPPER_INNER, LOWER_INNER = (np.asarray(p) - _F0 for p in zip(*L.INNER_LIP_PAIRS, strict=True))
# the middle of each lip: between the outer points 50-52 / 58-56 and the inner ones facing them
LIP_MIDDLES = (np.asarray([73, 74, 75, 81, 80, 79]), np.asarray([84, 85, 86, 90, 89, 88]))


def head_points(kp: np.ndarray) -> np.ndarray:
    """The 68 face points and the 10 brow points raised over the forehead (78, 2), from WholeBody (133, 3)."""
    face = np.asarray(kp, dtype=np.float64)[FACE, :2]
    brows = np.asarray(kp, dtype=np.float64)[BROWS, :2]
    up = brows.mean(0) - np.asarray(kp, dtype=np.float64)[CHIN, :2]  # the face's own up: a tilted head tilts it
    return np.concatenate([face, brows + FOREHEAD_RAISE * up])


def head_size(kp: np.ndarray) -> float:
    """The chin-to-brows distance of a WholeBody pose (133, 3), in its pixels: the head's scale."""
    kp = np.asarray(kp, dtype=np.float64)
    return float(np.hypot(*(kp[BROWS, :2].mean(0) - kp[CHIN, :2])))


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[complex, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ a (src - src mean) + dst mean, as (a, dst mean, src mean); a is complex."""
    ms, md = src.mean(0), dst.mean(0)
    zs = (src[:, 0] - ms[0]) + 1j * (src[:, 1] - ms[1])
    zd = (dst[:, 0] - md[0]) + 1j * (dst[:, 1] - md[1])
    den = np.vdot(zs, zs).real
    return (complex(np.vdot(zs, zd) / den) if den > 1e-12 else 1.0 + 0j), md, ms


def _subsamples(pts: np.ndarray) -> np.ndarray:
    """SUPERSAMPLE x SUPERSAMPLE sample points (N * S, 2) spread over each pixel centred at ``pts`` (N, 2)."""
    step = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    return (pts[:, None, None, :] + np.stack(np.meshgrid(step, step, indexing="xy"), -1)[None]).reshape(-1, 2)


def _share(hit: np.ndarray, n: int) -> np.ndarray:
    """Per pixel (n,), the share of its sub-samples that ``hit`` (n * S,) marks."""
    return hit.reshape(n, -1).mean(1)


def _face_down(face: np.ndarray) -> np.ndarray:
    """The face's own down (2,) from its 68 points: a tilted head tilts it."""
    down = face[CHIN - _F0] - face[BROWS - _F0].mean(0)
    return down / max(float(np.hypot(*down)), 1e-9)


def eye_opening(face: np.ndarray, eye: np.ndarray) -> float:
    """How far apart an eye's lids are (pixels, along the face's down) from the 68 face points (68, 2)."""
    e, down = face[eye], _face_down(face)
    return float(np.mean([(e[5] - e[1]) @ down, (e[4] - e[2]) @ down]))


def mouth_cover(face: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares (N,) of the pixels centred at ``pts`` (N, 2) that the open mouth's inside and its upper teeth cover,
    from the 68 face points (68, 2) of one frame; zeros while the lips are not apart by MOUTH_OPEN."""
    from .pose.regions import convex_hull, polygon_cover

    inner, upper, lower = face[INNER_LIPS], face[UPPER_INNER], face[LOWER_INNER]
    width = float(np.hypot(*(inner[4] - inner[0])))
    down = _face_down(face)
    gap = float(np.mean((lower - upper) @ down))
    cavity, teeth = np.zeros(len(pts)), np.zeros(len(pts))
    if width <= 1e-6 or gap < MOUTH_OPEN * width:
        return cavity, teeth
    margin = MOUTH_GROW * width
    near = ((pts >= inner.min(0) - margin - 1) & (pts <= inner.max(0) + margin + 1)).all(1)
    if not near.any():
        return cavity, teeth
    sub = _subsamples(pts[near])
    inside = polygon_cover(sub, convex_hull(inner), margin)
    tooth = inside & (sub @ down < float((upper @ down).min()) + min(TEETH_SHARE * gap, TEETH_MAX * width))
    cavity[near] = _share(inside & ~tooth, int(near.sum()))
    teeth[near] = _share(tooth, int(near.sum()))
    return cavity, teeth


def _signed_areas(pts: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


@dataclass
class FaceRestorer:
    """Warps the reference image's head onto frames, given each frame's WholeBody keypoints in its pixels."""

    reference: np.ndarray      # (H, W, 3) uint8, the size of the frames
    ref_keypoints: np.ndarray  # (133, 3) the reference image's pose, in its pixels
    min_score: float = 0.3
    frames_restored: int = 0   # counters, for the caller's report
    frames_skipped: int = 0
    _src: np.ndarray = field(init=False, repr=False)
    _tri: np.ndarray = field(init=False, repr=False)
    _ref_f32: np.ndarray = field(init=False, repr=False)
    _mouth_colours: np.ndarray | None = field(init=False, repr=False, default=None)  # (2, 3) inside, teeth
    _lid_colours: list[np.ndarray] = field(init=False, repr=False, default_factory=list)  # per eye (2, 3)

    def __post_init__(self) -> None:
        ref, kp = check_reference(self.reference, self.ref_keypoints, "face restore")
        from scipy.spatial import Delaunay, QhullError

        self._ref_f32 = ref.astype(np.float32)
        self._tri = np.zeros((0, 3), dtype=np.int64)
        if self._face_visible(kp):
            self._src = head_points(kp)
            try:
                self._tri = Delaunay(self._src).simplices.astype(np.int64)
            except QhullError:  # degenerate (all points on a line): nothing to warp
                self._tri = np.zeros((0, 3), dtype=np.int64)
            if len(self._tri):  # a consistent orientation, so that a flip in a frame shows as a sign change
                flip = _signed_areas(self._src, self._tri) < 0
                self._tri[flip] = self._tri[flip][:, [0, 2, 1]]
            face = self._src[:len(FACE)]
            # per eye: the lid's skin (between the upper lid and the brow) and its edge (at the upper lid's points)
            self._lid_colours = [np.stack([
                sample_reference(self._ref_f32, 0.5 * (face[eye[[1, 2]]] + face[list(brow)])).mean(0),
                sample_reference(self._ref_f32, face[eye[[1, 2]]]).min(0)])
                for eye, brow in zip(EYES, BROWS_ABOVE, strict=True)]
            if mouth_opening(kp) < MOUTH_OPEN:  # an open mouth's own inside comes with the mesh
                outer, inner = LIP_MIDDLES
                lips = sample_reference(self._ref_f32, 0.5 * (kp[outer, :2] + kp[inner, :2])).mean(0)
                self._mouth_colours = np.stack([CAVITY_SHADE * lips, np.asarray(TEETH_COLOUR)]).astype(np.float32)

    @property
    def usable(self) -> bool:
        """Whether the reference shows a whole face (otherwise every frame is left as generated)."""
        return len(self._tri) > 0

    def summary(self) -> str:
        """One line for the user: what the restoration did."""
        if not self.usable:
            return nothing_restored("face restore", f"no whole face (all {len(FACE)} face points at score >= "
                                                    f"{self.min_score:g})")
        done, left = self.frames_restored, self.frames_skipped
        return f"face restore: {done} of {done + left} frames" + (
            f" ({left} without a visible face left as generated)" if left else "")

    def _face_visible(self, kp: np.ndarray) -> bool:
        return bool(visible(kp, self.min_score)[FACE].all())

    def restore(self, frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 with the reference head blended in where each frame's face is visible."""
        frames, keypoints = check_frames(frames, keypoints, self.reference, "face restore")
        out = frames.copy()
        for t in range(len(frames)):
            if self.usable and self._face_visible(keypoints[t]):
                self._blend(out[t], head_points(keypoints[t]), self._hands(keypoints[t]))
                self.frames_restored += 1
            else:
                self.frames_skipped += 1
        return out

    def _hands(self, kp: np.ndarray) -> list[np.ndarray]:
        """The frame's visible hands' points: a hand in front of the face stays the model's."""
        out = []
        for hand in (L.LEFT_HAND, L.RIGHT_HAND):
            pts = kp[list(hand)][visible(kp, self.min_score)[list(hand)], :2]
            if len(pts) >= 3:
                out.append(pts)
        return out

    def _blend(self, frame: np.ndarray, dst: np.ndarray, hands: list[np.ndarray]) -> None:
        """Blend the warped reference head into one frame (in place), except where a hand covers it."""
        from scipy import ndimage

        from .pose.regions import convex_hull, polygon_cover

        H, W = frame.shape[:2]
        size = float(np.linalg.norm(dst[len(FACE):].mean(0) - dst[CHIN - FACE[0]])) / (1 + FOREHEAD_RAISE)
        sigma = max(FEATHER * size, MIN_FEATHER)
        pad = int(math.ceil(3 * sigma)) + 1
        x0, y0 = (max(int(math.floor(v)) - pad, 0) for v in dst.min(0))
        x1, y1 = (min(int(math.ceil(v)) + pad + 1, n) for v, n in zip(dst.max(0), (W, H), strict=True))
        if x0 >= x1 or y0 >= y1:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1]
        pts = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)
        sim = similarity(self._src, dst)
        a, md, ms = sim
        if abs(a) < 1e-6:  # a face shrunk to a point
            return
        z = ((pts[:, 0] - md[0]) + 1j * (pts[:, 1] - md[1])) / a
        moved = np.stack([z.real + ms[0], z.imag + ms[1]], -1)  # where each pixel reads the photo, moved rigidly
        src_xy, inside = self._source_coords(pts, dst, sim, moved)
        warped = sample_reference(self._ref_f32, src_xy)
        if self._mouth_colours is not None:
            cover = np.stack(mouth_cover(dst[:len(FACE)], pts), -1).astype(np.float32)  # (N, 2)
            warped = (1.0 - cover.sum(1, keepdims=True)) * warped + cover @ self._mouth_colours
        self._close_lids(warped, pts, dst, sim, moved)
        # the mask is built on a margin of zeros, so the feather fades out inside the box
        mask = np.zeros((y1 - y0 + 2 * pad, x1 - x0 + 2 * pad), dtype=np.float32)
        mask[pad:-pad, pad:-pad] = inside.reshape(y1 - y0, x1 - x0)
        if GROW:
            mask = ndimage.binary_dilation(mask, iterations=GROW).astype(np.float32)
        margin = GROW + 1.0
        hands = [h for h in hands if (h.min(0) - margin <= (x1 + pad, y1 + pad)).all()
                 and (h.max(0) + margin >= (x0 - pad, y0 - pad)).all()]  # only hands that reach the head's box
        if hands:
            gy, gx = np.mgrid[y0 - pad:y1 + pad, x0 - pad:x1 + pad]
            grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float64)
            for hand in hands:
                mask[polygon_cover(grid, convex_hull(hand), margin).reshape(mask.shape)] = 0.0
        mask = ndimage.gaussian_filter(mask, sigma, mode="constant")[pad:-pad, pad:-pad].reshape(-1, 1)
        region = frame[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
        blended = mask * warped + (1.0 - mask) * region
        frame[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8).reshape(y1 - y0, x1 - x0, 3)

    def _close_lids(self, warped: np.ndarray, pts: np.ndarray, dst: np.ndarray,
                    sim: tuple[complex, np.ndarray, np.ndarray], moved: np.ndarray) -> None:
        """An eye open less than LID_CLOSED of the photo's (a blink): the photo's eye moved by the face's similarity
        ``sim`` (not squeezed) between the frame's lids; the rest of the photo's eye outline the lid's skin, with a
        dark edge along the frame's upper lid. ``warped`` (N, 3) holds the pixels ``pts`` (N, 2), which read the
        photo at ``moved`` under the similarity; changed in place."""
        from .pose.regions import convex_hull, polygon_cover, segment_distance

        src, face = self._src[:len(FACE)], dst[:len(FACE)]
        a, md, ms = sim
        for eye, (skin, edge_colour) in zip(EYES, self._lid_colours, strict=True):
            opening = eye_opening(src, eye)
            if opening <= 0 or eye_opening(face, eye) >= LID_CLOSED * opening:  # shut in the photo too: the mesh
                continue
            z = a * ((src[eye, 0] - ms[0]) + 1j * (src[eye, 1] - ms[1]))
            photo = np.stack([z.real + md[0], z.imag + md[1]], -1)  # the photo's eye, moved with the face
            width = float(np.hypot(*(photo[3] - photo[0])))
            near = ((pts >= np.minimum(photo.min(0), face[eye].min(0)) - LID_GROW * width - 1)
                    & (pts <= np.maximum(photo.max(0), face[eye].max(0)) + LID_GROW * width + 1)).all(1)
            if not near.any():
                continue
            p = pts[near]
            sub = _subsamples(p)
            seen = polygon_cover(sub, convex_hull(face[eye]), 0.0)
            covered = polygon_cover(sub, convex_hull(photo), LID_GROW * width) | seen
            upper = face[eye[:4]]  # corner, upper lid, corner
            edge = covered & ~seen & (segment_distance(sub, upper[:-1], upper[1:]).min(1) <= LID_EDGE * width)
            covered, seen, edge = (_share(m, len(p))[:, None] for m in (covered, seen, edge))
            still = sample_reference(self._ref_f32, moved[near])
            warped[near] = ((1.0 - covered) * warped[near] + (covered - seen - edge) * skin + edge * edge_colour
                            + seen * still)

    def _source_coords(self, pts: np.ndarray, dst: np.ndarray, sim: tuple[complex, np.ndarray, np.ndarray],
                       moved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each frame pixel (N, 2) reads the reference (x, y), and whether it lies on the frame's head mesh;
        off the mesh ``moved``, where the face's similarity ``sim`` takes it (for the feather)."""
        tri, src = self._tri, self._src
        a, md, ms = sim
        coords = moved.copy()
        areas = _signed_areas(dst, tri)
        if areas[areas < 0].sum() < -FOLD_LIMIT * np.abs(areas).sum():
            # folded over (a head turned towards profile): the reference mesh moved by the similarity alone
            z = a * ((src[:, 0] - ms[0]) + 1j * (src[:, 1] - ms[1]))
            dst = np.stack([z.real + md[0], z.imag + md[1]], -1)
            areas = _signed_areas(dst, tri)
        # a sliver flipped by a small motion still maps its pixels (the signed area keeps u, v right); only
        # triangles without area are left out
        areas = np.where(np.abs(areas) > 1e-9, areas, np.nan)
        p0, p1, p2 = dst[tri[:, 0]], dst[tri[:, 1]], dst[tri[:, 2]]
        v0, v1 = p1 - p0, p2 - p0
        # barycentric (u, v) of every pixel in every triangle as two products with (x, y, 1): u = cross(p - p0, v1)
        # / area, v = cross(v0, p - p0) / area, each linear in the pixel's x and y
        cu = np.stack([v1[:, 1], -v1[:, 0], p0[:, 1] * v1[:, 0] - p0[:, 0] * v1[:, 1]]) / areas
        cv = np.stack([-v0[:, 1], v0[:, 0], p0[:, 0] * v0[:, 1] - p0[:, 1] * v0[:, 0]]) / areas
        ph = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
        u, v = ph @ cu, ph @ cv                                                 # (N, K)
        eps = 1e-9
        hit = (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps)
        inside = hit.any(1)
        n = np.flatnonzero(inside)
        k = hit[n].argmax(1)
        s0, s1, s2 = src[tri[k, 0]], src[tri[k, 1]], src[tri[k, 2]]
        coords[n] = s0 + u[n, k, None] * (s1 - s0) + v[n, k, None] * (s2 - s0)
        return coords, inside
