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

    # Pair weights w[q, k, i]: point i counts only if present in both frames.
    w = (valid[:, None, :] & valid[None, :, :]).astype(np.float64)
    n = w.sum(-1)
    safe_n = np.maximum(n, 1.0)
    # Weighted centroids of each frame restricted to the pair's common points.
    cq = np.einsum("qki,qid->qkd", w, xy) / safe_n[..., None]
    ck = np.einsum("qki,kid->qkd", w, xy) / safe_n[..., None]
    # Second moments expanded around the centroids, so nothing of size T*T*B*2 beyond w.
    sq = np.einsum("qki,qi->qk", w, (xy**2).sum(-1)) - n * (cq**2).sum(-1)
    sk = np.einsum("qki,ki->qk", w, (xy**2).sum(-1)) - n * (ck**2).sum(-1)
    # Cross terms: dot = sum w (a . b), crs = sum w (a x b) with a, b centred.
    m = np.einsum("qki,qid,kie->qkde", w, xy, xy)  # sum w a_d b_e before centring
    m = m - n[..., None, None] * cq[..., :, None] * ck[..., None, :]
    dot = m[..., 0, 0] + m[..., 1, 1]
    crs = m[..., 1, 0] - m[..., 0, 1]  # sum w (a_y b_x - a_x b_y)
    sse = sq + sk - 2.0 * np.sqrt(dot**2 + crs**2)
    err = np.sqrt(np.maximum(sse, 0.0) / safe_n)
    err[n < 2] = np.inf
    return err
