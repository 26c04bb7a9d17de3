"""The paper's training-data filter on DWPose keypoints, as a reusable function.

The paper keeps frames "whose face keypoint confidence > 0.9, upper-body confidence > 0.8 and at
least 90 % of upper-body points visible". It does not spell the statistics out; the definition
used here (every constant is an argument):

- face confidence      = MEAN score of the 68 face points (WholeBody 23-90);
- upper-body confidence = MEAN score of the upper-body points, by default
  ``layout.UPPER_BODY`` = WholeBody 0-10 (nose, eyes, ears, shoulders, elbows, wrists; hips are
  left out because upper-body framing often crops them -- the same points the pose similarity uses);
- visible fraction     = share of those upper-body points whose score > ``visible_score`` (0.3, the
  threshold DWPose wrappers use to draw a point);
- a frame passes when face > face_min AND upper > upper_min (strict) AND visible >= visible_fraction.

Scores are DWPose's raw SimCC maxima, which are not bounded to [0, 1]; the thresholds apply to that
scale, as the paper filtered with DWPose. With 11 upper-body points, 90 % visible means at most one
point missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..pose import layout as L

FACE_MIN = 0.9
UPPER_MIN = 0.8
VISIBLE_FRACTION = 0.9
VISIBLE_SCORE = 0.3


def _as_frames(kp: np.ndarray) -> np.ndarray:
    arr = np.asarray(kp, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints: expected shape ({L.NUM_KEYPOINTS}, 3) or (T, {L.NUM_KEYPOINTS}, 3), "
                         f"got {np.shape(kp)}")
    return arr


def _stats(kp: np.ndarray, visible_score: float, face_indices: Sequence[int],
           upper_indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = kp[..., 2]
    face = scores[:, list(face_indices)].mean(axis=1)
    upper_scores = scores[:, list(upper_indices)]
    upper = upper_scores.mean(axis=1)
    visible = (upper_scores > visible_score).mean(axis=1)
    return face, upper, visible


def training_filter(kp: np.ndarray, face_min: float = FACE_MIN, upper_min: float = UPPER_MIN,
                    visible_fraction: float = VISIBLE_FRACTION, visible_score: float = VISIBLE_SCORE,
                    face_indices: Sequence[int] = L.FACE,
                    upper_indices: Sequence[int] = L.UPPER_BODY) -> np.ndarray:
    """Boolean mask (T,): which frames of keypoints (T, 133, 3) pass the training filter."""
    face, upper, visible = _stats(_as_frames(kp), visible_score, face_indices, upper_indices)
    return (face > face_min) & (upper > upper_min) & (visible >= visible_fraction)


def _one_pose(kp: np.ndarray) -> np.ndarray:
    """One pose (133, 3) as an array, or a clear error."""
    kp = np.asarray(kp)
    if kp.shape != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints: expected shape ({L.NUM_KEYPOINTS}, 3), got {kp.shape}")
    return kp


def passes_training_filter(kp: np.ndarray, face_min: float = FACE_MIN, upper_min: float = UPPER_MIN,
                           visible_fraction: float = VISIBLE_FRACTION, visible_score: float = VISIBLE_SCORE,
                           face_indices: Sequence[int] = L.FACE,
                           upper_indices: Sequence[int] = L.UPPER_BODY) -> bool:
    """Whether one pose (133, 3) passes the training filter."""
    kp = _one_pose(kp)
    return bool(training_filter(kp, face_min, upper_min, visible_fraction, visible_score,
                                face_indices, upper_indices)[0])


def pose_quality(kp: np.ndarray, face_min: float = FACE_MIN, upper_min: float = UPPER_MIN,
                 visible_fraction: float = VISIBLE_FRACTION, visible_score: float = VISIBLE_SCORE,
                 face_indices: Sequence[int] = L.FACE,
                 upper_indices: Sequence[int] = L.UPPER_BODY) -> dict:
    """The filter's numbers for one pose (133, 3), plus hand scores and the verdict."""
    kp = _one_pose(kp)
    arr = _as_frames(kp)
    face, upper, visible = _stats(arr, visible_score, face_indices, upper_indices)
    scores = arr[0, :, 2]
    return {
        "face_score": float(face[0]),
        "upper_body_score": float(upper[0]),
        "upper_body_visible_fraction": float(visible[0]),
        "left_hand_score": float(scores[list(L.LEFT_HAND)].mean()),
        "right_hand_score": float(scores[list(L.RIGHT_HAND)].mean()),
        "passes": bool((face[0] > face_min) & (upper[0] > upper_min) & (visible[0] >= visible_fraction)),
    }
