"""Reference background restoration: the reference photo's own pixels wherever no person is.

The embedded models redraw the still background of every frame and leave it mottled. In a talking video the
camera holds still, so the background of every frame is the reference photo's wherever the person is not:
neither where the frame's pose puts them nor where the reference shows them (what their body covers there is
unknown). Both person masks come from the keypoints (face and hand outlines, arm capsules and the torso,
``pose.regions``), grown by a tenth of the shoulder width so that hair, sleeves and the model's soft outline
stay the model's; outside them the reference fades in over a fifth of the shoulder width. The person stays
the model's (and the face restorer's).

A post-process of the decoded frames, on by default for the embedded models only (their schedule's
``background_restore``); a model that draws its own background well, or a moving camera, has no need of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .pose import layout as L
from .restoration import check_frames, check_reference

GROW = 0.1      # the person masks are grown by this share of the reference's shoulder width (at least 1 px)
FEATHER = 0.2   # the reference fades in over this share of the shoulder width outside them (at least 1 px)
CELL = 2        # the masks are evaluated on 2 x 2 pixel cells (pose.regions.pixel_region_labels)


def _shoulder_width(kp: np.ndarray, min_score: float) -> float:
    ok = kp[[L.L_SHOULDER, L.R_SHOULDER], 2] >= min_score
    return float(np.hypot(*(kp[L.L_SHOULDER, :2] - kp[L.R_SHOULDER, :2]))) if ok.all() else 0.0


@dataclass
class BackgroundRestorer:
    """Puts the reference image's pixels back outside the person, given each frame's WholeBody keypoints."""

    reference: np.ndarray      # (H, W, 3) uint8, the size of the frames
    ref_keypoints: np.ndarray  # (133, 3) the reference image's pose, in its pixels
    min_score: float = 0.3
    frames_restored: int = 0
    _grow: int = field(init=False, default=0)
    _ramp: float = field(init=False, default=1.0)
    _ref_person: np.ndarray | None = field(init=False, default=None, repr=False)
    _ref_f32: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ref, kp = check_reference(self.reference, self.ref_keypoints, "background restore")
        self._ref_f32 = ref.astype(np.float32)
        width = _shoulder_width(kp, self.min_score)
        if width > 0:  # without both shoulders there is no body to keep clear of: nothing is restored
            self._grow = max(1, int(round(GROW * width)))
            self._ramp = max(1.0, FEATHER * width)
            self._ref_person = self._person(kp)

    @property
    def usable(self) -> bool:
        """Whether the reference shows the person's shoulders (the masks are built from them)."""
        return self._ref_person is not None

    def summary(self) -> str:
        """One line for the user: what the restoration did."""
        if not self.usable:
            return ("background restore: nothing to restore, the reference pose has no shoulders (score >= "
                    f"{self.min_score:g}); the frames are the model's")
        return f"background restore: {self.frames_restored} frames"

    def _person(self, kp: np.ndarray) -> np.ndarray:
        """Where the person may be in a frame with this pose: the regions' pixels, grown."""
        from scipy import ndimage

        from .pose.regions import pixel_region_labels

        h, w = self.reference.shape[:2]
        labels = pixel_region_labels(kp[None], h, w, cell=CELL, min_score=self.min_score)[0]
        return ndimage.binary_dilation(labels > 0, iterations=self._grow)

    def restore(self, frames: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Frames (T, H, W, 3) uint8 with the reference background outside both person masks."""
        from scipy import ndimage

        frames, keypoints = check_frames(frames, keypoints, self.reference, "background restore")
        if not self.usable:
            return frames.copy()
        out = np.empty_like(frames)
        for t in range(len(frames)):
            keep = self._person(keypoints[t]) | self._ref_person
            # the reference fades in with the distance from the person, so no pixel of theirs is touched
            weight = np.minimum(ndimage.distance_transform_edt(~keep) / self._ramp, 1.0)[..., None]
            mixed = weight * self._ref_f32 + (1.0 - weight) * frames[t].astype(np.float32)
            out[t] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
            self.frames_restored += 1
        return out
