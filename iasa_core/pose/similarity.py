"""Rigid (rotation + translation) pose alignment error between every pair of frames."""

from __future__ import annotations

import numpy as np

from .layout import UPPER_BODY

DEFAULT_MIN_SCORE = 0.3


def rigid_alignment_error(
    keypoints: np.ndarray,
    indices: tuple[int, ...] | None = UPPER_BODY,
    min_score: float = DEFAULT_MIN_SCORE,
) -> np.ndarray:
    """Return the (T, T) RMS error of the best rigid 2-D fit of frame k onto frame q.

    ``S[q, k] = min_{R, t} sqrt(mean_i ||P_q,i - (R P_k,i + t)||^2)`` over the points valid
    (score >= min_score) in both frames, solved in closed form (2-D Kabsch, no reflection).
    Pairs sharing fewer than two valid points get ``inf``. The matrix is symmetric.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 3:
        raise ValueError(f"keypoints must be (T, points, 3) = x, y, score; got shape {kp.shape}")
    if indices is not None:
        kp = kp[:, list(indices)]
    xy = kp[..., :2]
    valid = kp[..., 2] >= min_score
    xy = np.where(valid[..., None], xy, 0.0)

    # Pair weights w[q, k, i]: point i counts only if present in both frames. The (T, T, B, 2)
    # arrays are small (B ~ 11 points), and residuals computed explicitly stay exact for exact
    # copies, which the expanded sum-of-squares form does not.
    w = (valid[:, None, :] & valid[None, :, :]).astype(np.float64)
    n = w.sum(-1)
    safe_n = np.maximum(n, 1.0)
    a = np.broadcast_to(xy[:, None], w.shape + (2,))
    b = np.broadcast_to(xy[None, :], w.shape + (2,))
    a = a - (w[..., None] * a).sum(2, keepdims=True) / safe_n[..., None, None]
    b = b - (w[..., None] * b).sum(2, keepdims=True) / safe_n[..., None, None]
    dot = (w * (a * b).sum(-1)).sum(-1)
    crs = (w * (a[..., 1] * b[..., 0] - a[..., 0] * b[..., 1])).sum(-1)
    theta = np.arctan2(crs, dot)  # rotation of b that best matches a
    c, s = np.cos(theta)[..., None], np.sin(theta)[..., None]
    rb = np.stack([c * b[..., 0] - s * b[..., 1], s * b[..., 0] + c * b[..., 1]], -1)
    sse = (w * ((a - rb) ** 2).sum(-1)).sum(-1)
    err = np.sqrt(sse / safe_n)
    err[n < 2] = np.inf
    return err
