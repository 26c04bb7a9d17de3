"""Reference background restoration: the reference photo's own background wherever no person is.

The embedded models redraw the still background of every frame and leave it mottled. In a talking video the
camera holds still, so the background of every frame is the reference photo's wherever the person is not.
What the person covers in the reference is unknown: a clean plate fills it once from the nearest background
pixel, so a person who moves away leaves background, not the model's smear. The frame's person mask comes
from its keypoints (face and hand outlines, the head up to the hair, arm capsules and the torso,
``pose.regions``), grown by a share of the shoulder width so that hair, sleeves and the model's soft outline
stay the model's; outside it the plate fades in. The person stays the model's (and the other restorers').
When the body is restored from the reference too (``body_restore``), its outline is the reference's, not the
model's soft one, and the pipeline asks for the tight margins (``TIGHT``).

A post-process of the decoded frames, on by default for the embedded models only (their schedule's
``background_restore``); a model that draws its own background well, or a moving camera, has no need of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .face_restore import FACE, HAIR_MARGIN, head_points, head_size
from .pose import layout as L
from .restoration import (
    box_pixels,
    check_frames,
    check_reference,
    no_shoulders,
    nothing_restored,
    pixel_box,
    shoulder_width,
    visible,
)

GROW = 0.1      # the person masks are grown by this share of the reference's shoulder width (at least 1 px)
FEATHER = 0.2   # the reference fades in over this share of the shoulder width outside them (at least 1 px)
TIGHT = (0.02, 0.05)  # (grow, feather) when the body restorer draws the person's outline from the reference
LEGS = 2.0      # below visible hips the person goes on this many shoulder widths down (thighs and shins)
HIPS_OUT = 0.15  # and reaches this share of the shoulder width out beyond each hip joint
CELL = 2        # the masks are evaluated on 2 x 2 pixel cells (pose.regions.pixel_region_labels)


def legs(kp: np.ndarray, min_score: float) -> np.ndarray | None:
    """The legs' quad (4, 2) below both hips, LEGS shoulder widths long; None without both hips and shoulders."""
    ok = visible(kp, min_score)[[L.L_HIP, L.R_HIP]].all()
    width = shoulder_width(kp, min_score)  # 0 without both shoulders
    if not ok or width <= 0:
        return None
    lh, rh = kp[L.L_HIP, :2], kp[L.R_HIP, :2]
    down = (lh + rh) / 2 - (kp[L.L_SHOULDER, :2] + kp[L.R_SHOULDER, :2]) / 2
    across = lh - rh
    length, span = float(np.hypot(*down)), float(np.hypot(*across))
    if length < 1e-6 or span < 1e-6:
        return None
    step = LEGS * width * down / length
    out = HIPS_OUT * width * across / span  # the hip joints sit inside the body's outline
    return np.stack([lh + out, rh - out, rh - out + step, lh + out + step])


def _cover(mask: np.ndarray, shape: np.ndarray, margin: float) -> None:
    """Sets the pixels of ``mask`` (H, W) within ``margin`` of the convex hull of ``shape`` (N, 2), in place."""
    from .pose.regions import convex_hull, polygon_cover

    box = pixel_box(shape.min(0), shape.max(0), margin + 0.5, mask.shape)
    if box is not None:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] |= polygon_cover(box_pixels(box), convex_hull(shape), margin).reshape(y1 - y0, x1 - x0)


def person_mask(kp: np.ndarray, hw: tuple[int, int], grow: int, min_score: float) -> np.ndarray:
    """(H, W) bool: where the person may be with this pose (133, 3): the regions' pixels, the head up to the
    hair (the face restorer's head mesh) and the legs below visible hips, grown by ``grow`` pixels."""
    from scipy import ndimage

    from .pose.regions import pixel_region_labels

    h, w = hw
    person = pixel_region_labels(kp[None], h, w, cell=CELL, min_score=min_score)[0] > 0
    shapes = [legs(kp, min_score)]
    if visible(kp, min_score)[FACE].all():
        shapes.append(head_points(kp))
    for shape in shapes:
        if shape is not None:
            _cover(person, shape, 0.5)
    return ndimage.binary_dilation(person, iterations=grow) if grow > 0 else person


def clean_plate(reference: np.ndarray, ref_keypoints: np.ndarray, min_score: float = 0.3) -> np.ndarray | None:
    """The reference (H, W, 3) as float32 with its person (and what they enclose) replaced by the nearest
    background pixel; None without both shoulders (the person's size is unknown)."""
    from scipy import ndimage

    kp = np.asarray(ref_keypoints, dtype=np.float64)
    width = shoulder_width(kp, min_score)
    if width <= 0:
        return None
    ref = np.asarray(reference).astype(np.float32)
    person = person_mask(kp, ref.shape[:2], max(1, int(round(GROW * width))), min_score)
    if visible(kp, min_score)[FACE].all():  # hair beyond the head mesh is the person's too (body_restore moves it)
        _cover(person, head_points(kp), HAIR_MARGIN * head_size(kp))
    # a gap the person encloses (an arm beside the waist) may hold their clothes: filled too
    person = ndimage.binary_fill_holes(person)
    if person.all():
        return None
    nearest = ndimage.distance_transform_edt(person, return_distances=False, return_indices=True)
    return ref[nearest[0], nearest[1]]


@dataclass
class BackgroundRestorer:
    """Puts the reference's background back outside the person, given each frame's WholeBody keypoints."""

    reference: np.ndarray      # (H, W, 3) uint8, the size of the frames
    ref_keypoints: np.ndarray  # (133, 3) the reference image's pose, in its pixels
    min_score: float = 0.3
    grow: float = GROW         # shares of the reference's shoulder width (``TIGHT`` under a restored body)
    feather: float = FEATHER
    frames_restored: int = 0
    _grow: int = field(init=False, default=0)
    _ramp: float = field(init=False, default=1.0)
    _plate: np.ndarray | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        ref, kp = check_reference(self.reference, self.ref_keypoints, "background restore")
        width = shoulder_width(kp, self.min_score)
        if width > 0:  # without both shoulders there is no body to keep clear of: nothing is restored
            self._grow = max(1, int(round(self.grow * width)))
            self._ramp = max(1.0, self.feather * width)
            self._plate = clean_plate(ref, kp, self.min_score)

    @property
    def usable(self) -> bool:
        """Whether the reference shows the person's shoulders (the masks are built from them)."""
        return self._plate is not None

    def summary(self) -> str:
        """One line for the user: what the restoration did."""
        if not self.usable:
            return nothing_restored("background restore", no_shoulders(self.min_score))
        return f"background restore: {self.frames_restored} frames"

    def restore(self, frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 with the reference background (its clean plate) outside the person."""
        from scipy import ndimage

        frames, keypoints = check_frames(frames, keypoints, self.reference, "background restore")
        if not self.usable:
            return frames.copy()
        out = np.empty_like(frames)
        hw = frames.shape[1:3]
        for t in range(len(frames)):
            keep = person_mask(keypoints[t], hw, self._grow, self.min_score)
            # the plate fades in with the distance from the person, so no pixel of theirs is touched
            weight = np.minimum(ndimage.distance_transform_edt(~keep) / self._ramp, 1.0)[..., None]
            mixed = weight * self._plate + (1.0 - weight) * frames[t].astype(np.float32)
            out[t] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
            self.frames_restored += 1
        return out
