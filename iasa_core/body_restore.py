"""Reference body restoration: the reference photo's head, torso, arms and hands, moved onto every frame's pose.

The embedded models draw the body as a smeared blob (their small VAE and DiT lose a shirt's edges and a thin
limb's shape), so a gesture does not show. The keypoints say where each frame's shoulders, hips, elbows,
wrists and hand points are, and the reference photo shows what the body looks like. So every frame gets:
- the reference torso (shoulders to hips, or downwards from the shoulders when the hips are out of the
  picture, with the legs below visible hips), moved by the affine map of those four points. What the
  reference's own arms and hands cover of it is filled once from the clothes beside them in the same row, so
  an arm that moves away leaves the shirt (and its hem), not its ghost;
- for each visible bone (shoulder-elbow, elbow-wrist), the reference's pixels around that bone moved rigidly
  along it: stretched along the bone with its length (an arm pointing at the camera looks shorter), across
  it with the body's scale (it does not get thinner). Where the other hand rests on the bone in the reference
  (crossed arms), that hand's pixels are repainted with the arm's own colours along the bone, so the hand
  does not stay behind on the arm when it moves;
- each hand, the reference hand moved by the least-squares similarity of its visible points; what its
  footprint holds of the reference's arms and other hand (hands resting on a forearm, clasped hands) stays
  behind, except within ``HAND_KEEP`` of the hand's own points;
- first of all, the head: the reference's face with its hair and ears, out to ``face_restore.HAIR_MARGIN``
  beyond the head's points, moved by the least-squares similarity of those points (the face restorer then
  warps the face itself over it, so what this adds is the hair and the outline the face mesh does not reach).
Layers go head, torso, forearm, upper arm, hand, each with a one-pixel anti-aliased edge. Each carries a matte:
how far each reference pixel is from the clean plate (the reference's background without the person,
``background_restore.clean_plate``), so the background a part's footprint holds in the photo gives way to
what is behind the part in this frame (a part laid before, else the plate). A band around the head, each arm
and each hand clears the model's own smeared outline the same way. The neck stays the model's.

A part is restored only where its keypoints are visible in the reference and in the frame, and nothing
without both of the reference's shoulders (they set the body's scale). A post-process of the decoded
frames, on by default for the embedded models only (their schedule's ``body_restore``); a model that draws
its own body has no need of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .background_restore import clean_plate, legs
from .face_restore import HAIR_MARGIN, head_points, head_size, similarity
from .pose import layout as L
from .pose.regions import convex_hull, segment_distance
from .restoration import (
    Box,
    box_pixels,
    check_frames,
    check_reference,
    no_shoulders,
    nothing_restored,
    pixel_box,
    sample_reference,
    shoulder_width,
    visible,
)

# half an arm's thickness as a share of the shoulder width (pose.regions' arm capsules; an adult upper arm is
# about 9-10 cm across on 38-41 cm shoulders): a little more than a forearm, so its outline comes along
ARM_RADIUS = 0.12
HAND_MARGIN = 0.25  # the hand's outline beyond its points' hull, as a share of its size (wrist to middle knuckle)
# A hand's footprint in the reference holds no pixel of the reference's arms or other hand farther than this
# (pixels) from its own points' hull: a hand resting on a forearm must not carry that forearm's edge along
HAND_KEEP = 1.0
# An arm bone's pixels this far (a share of the hand's extent) around a hand that is not its own (a hand resting
# on the other arm) are the arm's own colours filled along the bone, not that hand: the hand moves on without it
HAND_CLEAR = 0.5
FILL_GAP = 2.5  # and never filled from within this many pixels more of that hand (its outline, its shadow)
MIN_HAND_POINTS = 5  # points seen in both the reference and the frame needed to place a hand
TORSO_DOWN = 1.5    # without both hips the torso runs this many shoulder widths down (as pose.regions' body)
MATTE_RANGE = 32.0  # grey levels from the clean plate at which a reference pixel counts wholly as the person
# Around each arm bone and hand, a band of this share of the shoulder width gets the clean plate (or the torso
# under it): the model's own smeared outline would show there, inside the background restorer's margins
CLEAR = 0.1
# What the arms and hands covered is never filled from pixels this many pixels beyond them (their own dark edge,
# just outside the capsule): a row fill from it would streak across the shirt
FILL_RING = 1.0
# forearm, then upper arm (over the forearm at the elbow), per side; the hands go over both arms
BONES = ((L.L_ELBOW, L.L_WRIST), (L.L_SHOULDER, L.L_ELBOW), (L.R_ELBOW, L.R_WRIST), (L.R_SHOULDER, L.R_ELBOW))
HANDS = (np.asarray(L.LEFT_HAND), np.asarray(L.RIGHT_HAND))
WRIST_HAND = {L.L_WRIST: 0, L.R_WRIST: 1}  # the hand at the end of a forearm


def _perp(v: np.ndarray) -> np.ndarray:
    return np.array([-v[1], v[0]])


def _hull_distance(pts: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """Distance from each point (N, 2) to a counter-clockwise convex polygon (0 inside), in float32.

    float32 around the polygon's first corner: pixel boxes are at most a few hundred pixels across, so that is
    exact to 1e-4 px, and the (N, edges) arrays take half the memory traffic (the body restorer's hottest loop)."""
    if len(hull) == 1:
        return np.linalg.norm(pts - hull[0], axis=1).astype(np.float32)
    pts, hull = (pts - hull[0]).astype(np.float32), (hull - hull[0]).astype(np.float32)
    a, b = hull, np.roll(hull, -1, axis=0)
    ex, ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]                      # (E,): x and y written out, faster
    rx, ry = pts[:, None, 0] - a[None, :, 0], pts[:, None, 1] - a[None, :, 1]  # (N, E)
    t = np.clip((rx * ex + ry * ey) / np.maximum(ex * ex + ey * ey, np.float32(1e-12)), 0.0, 1.0)
    ox, oy = rx - t * ex, ry - t * ey
    d = np.sqrt((ox * ox + oy * oy).min(1))
    if len(hull) >= 3:
        d[(ex * ry - ey * rx >= 0).all(1)] = 0.0
    return d


def fill_along_rows(image: np.ndarray, source: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) with its ``fill`` pixels interpolated between the nearest ``source`` pixels left and
    right of them in their row (the one there, at a row's end); rows without a source pixel take the nearest
    one in the plane. Clothes' edges (a hem, a belt) run across the body: an arm over them is filled without
    breaking the line, where a nearest-pixel fill drags it into a diagonal."""
    from scipy import ndimage

    out = image.copy()
    if not source.any() or not fill.any():
        return out
    rest = np.zeros_like(fill)
    for y in np.flatnonzero(fill.any(1)):
        src, at = np.flatnonzero(source[y]), np.flatnonzero(fill[y])
        if not len(src):
            rest[y, at] = True
            continue
        i = np.searchsorted(src, at)
        left, right = src[np.maximum(i - 1, 0)], src[np.minimum(i, len(src) - 1)]
        left, right = np.where(i > 0, left, right), np.where(i < len(src), right, left)
        w = ((at - left) / np.maximum(right - left, 1))[:, None]
        out[y, at] = (1.0 - w) * image[y, left] + w * image[y, right]
    if rest.any():
        nearest = ndimage.distance_transform_edt(~source, return_distances=False, return_indices=True)
        out[rest] = image[nearest[0][rest], nearest[1][rest]]
    return out


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


@dataclass
class BodyRestorer:
    """Moves the reference image's head, torso, arms and hands onto frames, given each frame's WholeBody keypoints."""

    reference: np.ndarray      # (H, W, 3) uint8, the size of the frames
    ref_keypoints: np.ndarray  # (133, 3) the reference image's pose, in its pixels
    min_score: float = 0.3
    frames_restored: int = 0   # frames with at least one part restored
    parts_restored: int = 0    # heads, torsos, arm bones and hands restored over all frames
    _ref_kp: np.ndarray = field(init=False, repr=False)
    _ref_head: np.ndarray = field(init=False, repr=False)  # the reference's head points (face_restore.head_points)
    _ref_f32: np.ndarray = field(init=False, repr=False)
    _plate: np.ndarray | None = field(init=False, default=None, repr=False)  # the background without the person
    _limb_source: np.ndarray = field(init=False, repr=False)   # (H, W, 4): the reference and its matte
    _torso_source: np.ndarray = field(init=False, repr=False)  # the same without its arms and hands on the torso
    _hand_sources: tuple = field(init=False, repr=False)  # per hand: the limb source without the other limbs
    _bone_sources: dict = field(init=False, repr=False)  # per bone: the limb source with other hands filled over
    _shoulders: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        ref, kp = check_reference(self.reference, self.ref_keypoints, "body restore")
        self._ref_f32 = ref.astype(np.float32)
        self._ref_kp = kp
        self._ref_head = head_points(kp)
        self._shoulders = shoulder_width(kp, self.min_score)
        self._plate = clean_plate(ref, kp, self.min_score) if self._shoulders > 0 else None
        if self.usable:
            self._limb_source = self._with_matte(self._ref_f32)
            self._torso_source = self._with_matte(self._clear_torso(self._limb_source[..., 3] > 0))
            self._hand_sources = self._own_hands()
            self._bone_sources = self._bare_bones()

    def _with_matte(self, image: np.ndarray) -> np.ndarray:
        """The image (H, W, 3) and a fourth channel: how surely each pixel is the person, not the background."""
        matte = np.clip(np.abs(image - self._plate).max(-1) / MATTE_RANGE, 0.0, 1.0)
        return np.concatenate([image, matte[..., None]], axis=-1)

    def _clear_torso(self, person: np.ndarray) -> np.ndarray:
        """The reference without its arms and hands: on the torso's outline filled from the person's pixels beside
        them in the same row (``fill_along_rows``), elsewhere the clean plate (so the torso's margin carries no
        arm's colour)."""
        hw = self.reference.shape[:2]
        kp, ok = self._ref_kp, visible(self._ref_kp, self.min_score)
        limbs, edged = np.zeros(hw, dtype=bool), np.zeros(hw, dtype=bool)
        for _, (x0, y0, x1, y1), _, distance, reach in self._limb_layers(kp, kp, ok, 1.0, 1.0 + FILL_RING, hw):
            limbs[y0:y1, x0:x1] |= (distance < reach + 0.5).reshape(y1 - y0, x1 - x0)
            edged[y0:y1, x0:x1] |= (distance < reach + 0.5 + FILL_RING).reshape(y1 - y0, x1 - x0)
        torso = np.zeros(hw, dtype=bool)
        outline = self._outline(kp, bool(ok[[L.L_HIP, L.R_HIP]].all()))
        box = pixel_box(outline.min(0), outline.max(0), 0.0, hw)
        if box is not None:
            x0, y0, x1, y1 = box
            torso[y0:y1, x0:x1] = (_hull_distance(box_pixels(box), outline) == 0).reshape(y1 - y0, x1 - x0)
        out = self._ref_f32.copy()
        limbs &= person
        out[limbs & ~torso] = self._plate[limbs & ~torso]
        source, fill = torso & ~edged & person, limbs & torso  # from clothes, not from background in the outline
        return fill_along_rows(out, source, fill)

    def _own_hands(self) -> tuple[np.ndarray, ...]:
        """Per hand, the limb source whose matte leaves out the reference's arm bones and other hand beyond
        ``HAND_KEEP`` pixels of this hand's hull: what the hand's footprint holds of them stays behind."""
        hw = self.reference.shape[:2]
        kp, ok = self._ref_kp, visible(self._ref_kp, self.min_score)
        parts = list(self._limb_layers(kp, kp, ok, 1.0, 1.0, hw))
        sources = []
        for k in range(len(HANDS)):
            own = [layer for layer in parts if layer[0] == k]
            if not own:
                sources.append(self._limb_source)
                continue
            others = np.zeros(hw, dtype=bool)
            for hand, (x0, y0, x1, y1), _, distance, reach in parts:
                if hand != k:  # a bone's capsule, the other hand's footprint
                    others[y0:y1, x0:x1] |= (distance < reach + 0.5).reshape(y1 - y0, x1 - x0)
            (x0, y0, x1, y1), _, distance, _ = own[0][1:]
            keep = np.zeros(hw, dtype=bool)
            keep[y0:y1, x0:x1] = (distance <= HAND_KEEP).reshape(y1 - y0, x1 - x0)
            source = self._limb_source.copy()
            source[others & ~keep, 3] = 0.0
            sources.append(source)
        return tuple(sources)

    def _bare_bones(self) -> dict[int, np.ndarray]:
        """Per arm bone carrying a hand not its own in the reference (crossed arms, a hand on the other arm): the
        limb source with that hand's pixels on the bone filled along the bone from the arm beside them
        (``fill_along_rows`` on the bone straightened), so that hand does not stay on the arm when it moves."""
        hw = self.reference.shape[:2]
        kp, ok = self._ref_kp, visible(self._ref_kp, self.min_score)
        hands = {}
        for hand, idx in enumerate(HANDS):
            seen = idx[ok[idx]]
            if len(seen) >= MIN_HAND_POINTS:
                pts = kp[seen, :2]
                hands[hand] = (convex_hull(pts), HAND_CLEAR * float(np.hypot(*(pts.max(0) - pts.min(0)))),
                               np.median(sample_reference(self._ref_f32, pts), axis=0))
        radius = ARM_RADIUS * self._shoulders
        sources = {}
        for bone, (i, j) in enumerate(BONES):
            if not (ok[i] and ok[j]):
                continue
            a, b = kp[i, :2], kp[j, :2]
            length = float(np.hypot(*(b - a)))
            box = pixel_box(np.minimum(a, b), np.maximum(a, b), radius + 1.0, hw)
            if length < 1e-6 or box is None:
                continue
            pts = box_pixels(box)
            rows, cols = pts[:, 1].astype(int), pts[:, 0].astype(int)
            on_bone = segment_distance(pts, a[None], b[None])[:, 0] <= radius + 1.0
            colour = self._ref_f32[rows, cols]
            near = np.zeros(len(pts), dtype=bool)
            skin = np.full(len(pts), np.inf)
            for hand, (hull, grow, tone) in hands.items():
                if hand != WRIST_HAND.get(j):
                    close = _hull_distance(pts, hull) <= grow
                    near |= close
                    skin = np.where(close, np.minimum(skin, np.abs(colour - tone).sum(-1)), skin)
            core = on_bone & ~near & (self._limb_source[rows, cols, 3] > 0.5)
            if not (near & on_bone).any() or not core.any():
                continue
            # the hand's pixels: nearer its colour than the arm's (a bare forearm under a hand looks alike and
            # is repainted with itself; the shirt beside the arm is left alone)
            arm = np.median(colour[core], axis=0)
            covered = near & on_bone & (skin < np.abs(colour - arm).sum(-1))
            if not covered.any():
                continue
            # the bone straightened: columns along it, rows across it, one pixel apart
            e = (b - a) / length
            n = _perp(e)
            us = np.arange(-radius - 1.0, length + radius + 1.0 + 1e-9)
            vs = np.arange(-radius - 1.0, radius + 1.0 + 1e-9)
            grid = a + us[None, :, None] * e + vs[:, None, None] * n  # (V, U, 2)
            flat = grid.reshape(-1, 2)
            straight = sample_reference(self._limb_source, flat).reshape(len(vs), len(us), 4)
            gone = np.zeros(len(flat), dtype=bool)
            for hand, (hull, grow, _) in hands.items():
                if hand != WRIST_HAND.get(j):
                    gone |= _hull_distance(flat, hull) <= grow + FILL_GAP
            gone = gone.reshape(len(vs), len(us))
            # from the arm between its joints, not from around it or past its ends (a wrist's hand, the shirt)
            between = ((us >= 0.0) & (us <= length))[None, :]
            filled = fill_along_rows(straight, ~gone & between & (straight[..., 3] > 0.5), gone)
            rel = pts[covered] - a
            at = np.stack([rel @ e - us[0], rel @ n - vs[0]], -1)  # where those pixels sit in the straight bone
            source = self._limb_source.copy()
            source[rows[covered], cols[covered], :3] = sample_reference(filled, at)[:, :3]  # the matte stays
            sources[bone] = source
        return sources

    @property
    def usable(self) -> bool:
        """Whether the reference shows both shoulders (they set the body's scale)."""
        return self._plate is not None

    def summary(self) -> str:
        """One line for the user: what the restoration did."""
        if not self.usable:
            return nothing_restored("body restore", no_shoulders(self.min_score))
        return (f"body restore: {self.parts_restored} parts (head, torso, arm bones, hands) in {self.frames_restored} "
                "frames")

    def restore(self, frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 with the reference head, torso, arms and hands over each frame's visible parts."""
        frames, keypoints = check_frames(frames, keypoints, self.reference, "body restore")
        out = frames.copy()
        if not self.usable:
            return out
        hw = frames.shape[1:3]
        for t in range(len(frames)):
            scale = self._scale(keypoints[t])
            layers = self._layers(keypoints[t], scale, hw)
            if not layers:
                continue
            frame = out[t].astype(np.float32)
            laid = np.zeros(hw + (1,), dtype=np.float32)  # how much of each pixel a part laid so far covers
            ring = CLEAR * self._shoulders * scale
            for source, (x0, y0, x1, y1), src_xy, distance, reach in layers:
                shape = (y1 - y0, x1 - x0, 1)
                warped = sample_reference(source, src_xy).reshape(shape[:2] + (4,))
                part = np.clip(reach + 0.5 - distance, 0.0, 1.0).reshape(shape)
                person = part * warped[..., 3:]
                below, plate = frame[y0:y1, x0:x1], self._plate[y0:y1, x0:x1]
                # where the footprint shows the reference's background, and in the band around a limb: what
                # lies behind the part here, a part laid before (the torso, the other arm) or else the background
                # (the torso gets no band: the neck and the model's hips are there)
                cover = laid[y0:y1, x0:x1]
                band = part if source is self._torso_source else np.clip(reach + ring + 0.5 - distance, 0.0,
                                                                         1.0).reshape(shape)
                behind = cover * below + (1.0 - cover) * plate
                laid[y0:y1, x0:x1] = np.maximum(cover, person)
                frame[y0:y1, x0:x1] = person * warped[..., :3] + (band - person) * behind + (1.0 - band) * below
            out[t] = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
            self.frames_restored += 1
            self.parts_restored += len(layers)
        return out

    def _layers(self, kp: np.ndarray, scale: float, hw: tuple[int, int]
                ) -> list[tuple[np.ndarray, Box, np.ndarray, np.ndarray]]:
        """One frame's restored parts, bottom first: (source image, box, where its pixels (N, 2) read the source,
        their distance (N,) from the part's shape, and how far from the shape the part reaches)."""
        ref = self._ref_kp
        ok = visible(kp, self.min_score) & visible(ref, self.min_score)
        pad = CLEAR * self._shoulders * scale + 1.0  # the boxes hold the band around each part
        layers = []
        if ok[list(L.FACE)].all():
            head = self._head(kp, pad, hw)
            if head is not None:
                layers.append((self._limb_source, *head))
        if ok[[L.L_SHOULDER, L.R_SHOULDER]].all():
            torso = self._torso(kp, ok, scale, pad, hw)
            if torso is not None:
                layers.append((self._torso_source, *torso))
        layers += [(self._bone_sources.get(-1 - hand, self._limb_source) if hand < 0 else self._hand_sources[hand],
                    *layer)
                   for hand, *layer in self._limb_layers(kp, ref, ok, scale, pad, hw)]
        return layers

    def _scale(self, kp: np.ndarray) -> float:
        """The body's size in a frame over the reference's (1 without both shoulders in the frame)."""
        width = shoulder_width(kp, self.min_score)
        return width / self._shoulders if width > 0 else 1.0

    def _torso(self, kp: np.ndarray, ok: np.ndarray, scale: float, pad: float, hw: tuple[int, int]):
        hips = bool(ok[[L.L_HIP, L.R_HIP]].all())
        m = _affine(torso_points(self._ref_kp, hips), torso_points(kp, hips))
        if m is None:
            return None
        outline = self._outline(kp, hips)
        margin = ARM_RADIUS * self._shoulders * scale  # the shirt reaches over the shoulder points
        box = pixel_box(outline.min(0), outline.max(0), margin + pad, hw)
        if box is None:
            return None
        pts = box_pixels(box)
        return box, pts @ m[:, :2].T + m[:, 2], _hull_distance(pts, outline), margin

    def _outline(self, kp: np.ndarray, hips: bool) -> np.ndarray:
        """The convex hull of the torso's corners and the legs' below visible hips (they move with the torso).

        Convex, so clothes wider at the waist or the hips stay in; what it takes of the background beside the
        waist is the reference's background, which the matte leaves to the clean plate."""
        below = legs(kp, self.min_score) if hips else None
        corners = torso_points(kp, hips)
        return convex_hull(corners if below is None else np.concatenate([corners, below[2:]]))

    def _limb_layers(self, kp: np.ndarray, ref: np.ndarray, ok: np.ndarray, scale: float, pad: float,
                     hw: tuple[int, int]) -> Iterator[tuple[int, Box, np.ndarray, np.ndarray, float]]:
        """The arm bones' and hands' parts of one frame: (which hand, or -1 - the bone's index in ``BONES``;
        box, reference coordinates (N, 2), distance (N,), reach)."""
        radius = ARM_RADIUS * self._shoulders * scale
        for bone, (i, j) in enumerate(BONES):
            if ok[i] and ok[j]:
                layer = self._bone(kp[i, :2], kp[j, :2], ref[i, :2], ref[j, :2], radius, scale, pad, hw)
                if layer is not None:
                    yield (-1 - bone, *layer)
        for hand, idx in enumerate(HANDS):
            both = idx[ok[idx]]
            if len(both) >= MIN_HAND_POINTS:
                wrist, knuckle = idx[0], idx[9]  # the hand's size: wrist to middle knuckle, else its points' extent
                pts = kp[both, :2]
                size = (float(np.hypot(*(kp[knuckle, :2] - kp[wrist, :2]))) if ok[wrist] and ok[knuckle] else
                        0.5 * float(np.hypot(*(pts.max(0) - pts.min(0)))))
                layer = self._hand(pts, ref[both, :2], size, pad, hw)
                if layer is not None:
                    yield (hand, *layer)

    def _bone(self, a: np.ndarray, b: np.ndarray, a0: np.ndarray, b0: np.ndarray, radius: float, scale: float,
              pad: float, hw: tuple[int, int]):
        length, length0 = float(np.hypot(*(b - a))), float(np.hypot(*(b0 - a0)))
        if length < 1e-6 or length0 < 1e-6 or radius <= 0:
            return None
        box = pixel_box(np.minimum(a, b), np.maximum(a, b), radius + pad, hw)
        if box is None:
            return None
        pts = box_pixels(box)
        e = (b - a) / length
        rel = pts - a
        along = rel @ e / length              # 0 at a, 1 at b
        across = rel @ _perp(e) / scale       # in the reference's pixels
        src = a0 + along[:, None] * (b0 - a0) + across[:, None] * _perp((b0 - a0) / length0)
        return box, src, segment_distance(pts, a[None], b[None])[:, 0], radius

    def _head(self, kp: np.ndarray, pad: float, hw: tuple[int, int]):
        return self._rigid(head_points(kp), self._ref_head, HAIR_MARGIN * head_size(kp), pad, hw)

    def _hand(self, dst: np.ndarray, src: np.ndarray, size: float, pad: float, hw: tuple[int, int]):
        return self._rigid(dst, src, HAND_MARGIN * size, pad, hw)

    @staticmethod
    def _rigid(dst: np.ndarray, src: np.ndarray, margin: float, pad: float, hw: tuple[int, int]):
        """A part moved by the least-squares similarity of its points src -> dst (N, 2): its footprint is their
        hull grown by ``margin`` (at least a pixel)."""
        a, md, ms = similarity(src, dst)
        if abs(a) < 1e-6:
            return None
        margin = max(margin, 1.0)
        box = pixel_box(dst.min(0), dst.max(0), margin + pad, hw)
        if box is None:
            return None
        pts = box_pixels(box)
        z = ((pts[:, 0] - md[0]) + 1j * (pts[:, 1] - md[1])) / a
        src_xy = np.stack([z.real + ms[0], z.imag + ms[1]], -1)
        return box, src_xy, _hull_distance(pts, convex_hull(dst)), margin

