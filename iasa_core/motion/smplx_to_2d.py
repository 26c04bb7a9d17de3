"""SMPL-X motion -> COCO-WholeBody-133 keypoints aligned to the person in the reference image.

Chain (:func:`smplx_motion_to_poses`): forward kinematics (:mod:`.smplx_model`), the EMAGE
authors' near-orthographic camera (:func:`project`), the joint -> WholeBody mapping
(:func:`to_wholebody`), a similarity fit on the torso followed by a bone-length retarget to the
reference pose (:func:`align_to_reference`), and linear resampling from 30 fps (:func:`resample`).
"""

from __future__ import annotations

import os

import numpy as np

from ..pose import layout as L
from ..pose.sequence import PoseSequence
from . import smplx_model as S
from .smplx_model import SmplxModel, find_smplx_file

DEFAULT_MIN_SCORE = 0.3
EMAGE_FPS = 30.0

# ------------------------------------------------------------------------------------ mapping

_LEFT_HAND_FROM_SMPLX = (20, 37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70)
_RIGHT_HAND_FROM_SMPLX = (21, 52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75)


def _build_mapping() -> tuple[int, ...]:
    m = [-1] * L.NUM_KEYPOINTS
    body = {
        L.NOSE: S.JOINT_NOSE, L.L_EYE: S.JOINT_L_EYE, L.R_EYE: S.JOINT_R_EYE,
        L.L_EAR: S.JOINT_L_EAR, L.R_EAR: S.JOINT_R_EAR,
        L.L_SHOULDER: 16, L.R_SHOULDER: 17, L.L_ELBOW: 18, L.R_ELBOW: 19, L.L_WRIST: 20, L.R_WRIST: 21,
        L.L_HIP: 1, L.R_HIP: 2, 13: 4, 14: 5, 15: 7, 16: 8,   # knees, ankles
    }
    for wb, sx in body.items():
        m[wb] = sx
    for k, wb in enumerate(L.FEET):  # L big toe, L small toe, L heel, R big toe, R small toe, R heel
        m[wb] = S.FEET_JOINTS[k]
    # WholeBody face = iBUG-68 order: 17 contour points, then the 51 inner points.
    for k in range(S.NUM_CONTOUR):
        m[L.FACE[k]] = S.CONTOUR_START + k
    for k in range(S.NUM_FACE_LANDMARKS):
        m[L.FACE[S.NUM_CONTOUR + k]] = S.FACE_LANDMARK_START + k
    for wb, sx in zip(L.LEFT_HAND, _LEFT_HAND_FROM_SMPLX, strict=True):
        m[wb] = sx
    for wb, sx in zip(L.RIGHT_HAND, _RIGHT_HAND_FROM_SMPLX, strict=True):
        m[wb] = sx
    return tuple(m)


# Entry i: the SMPL-X output joint (144-joint numbering) that gives WholeBody point i.
WHOLEBODY_FROM_SMPLX = _build_mapping()
LEG_POINTS = (13, 14, 15, 16) + L.FEET


# ------------------------------------------------------------------------------------ projection


def project(joints, height: int, width: int, focal: float = 5000.0, cam_depth: float = 16.0,
            y_offset: float = 0.8) -> np.ndarray:
    """Pixel coordinates (T, J, 2) of 3-D joints (T, J, 3) (numpy or torch) on an H x W canvas.

    The EMAGE authors' render camera (DESIGN section 7; PantoMatrix ``emage_utils/npz2pose.py``:
    focal 5000, camera translation (0, -0.8, 16), x mirrored):
    ``u = w/2 + f x / (z + depth)``, ``v = h/2 - f (y - offset) / (z + depth)``.
    """
    if hasattr(joints, "detach"):
        joints = joints.detach().cpu().numpy()
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim < 2 or j.shape[-1] != 3:
        raise ValueError(f"project: expected joints (..., J, 3), got shape {j.shape}")
    z = j[..., 2] + cam_depth
    if not (z > 0).all():
        raise ValueError(f"project: joints must lie in front of the camera (z + {cam_depth} > 0); "
                         f"got min z + depth = {z.min():.3g}")
    u = width / 2.0 + focal * j[..., 0] / z
    v = height / 2.0 - focal * (j[..., 1] - y_offset) / z
    return np.stack([u, v], -1)


def to_wholebody(joints_2d, include_legs: bool = False) -> np.ndarray:
    """WholeBody keypoints (T, 133, 3) from projected SMPL-X joints (T, J, 2), J = 144 (or 127).

    Score 1 for mapped points; 0 for knees, ankles and feet unless ``include_legs`` (upper-body
    video), and 0 for the 17 face-contour points when the joints have no contour (J = 127).
    """
    if hasattr(joints_2d, "detach"):
        joints_2d = joints_2d.detach().cpu().numpy()
    j = np.asarray(joints_2d, dtype=np.float64)
    if j.ndim == 2:
        j = j[None]
    if j.ndim != 3 or j.shape[-1] < 2 or j.shape[1] < S.NUM_JOINTS_NO_CONTOUR:
        raise ValueError(f"to_wholebody: expected (T, {S.NUM_JOINTS_WITH_CONTOUR} or "
                         f"{S.NUM_JOINTS_NO_CONTOUR}, 2) SMPL-X joints, got shape {j.shape}")
    idx = np.asarray(WHOLEBODY_FROM_SMPLX)
    present = (idx >= 0) & (idx < j.shape[1])
    out = np.zeros((j.shape[0], L.NUM_KEYPOINTS, 3), dtype=np.float64)
    out[:, present, :2] = j[:, idx[present], :2]
    out[:, present, 2] = 1.0
    if not include_legs:
        out[:, list(LEG_POINTS)] = 0.0
    return out


# ------------------------------------------------------------------------------------ alignment

_NECK = L.NUM_KEYPOINTS  # virtual point appended after the 133: midpoint of the shoulders
_MIRROR = {L.L_SHOULDER: L.R_SHOULDER, L.L_ELBOW: L.R_ELBOW, L.L_WRIST: L.R_WRIST, L.L_HIP: L.R_HIP,
           13: 14, 15: 16, 17: 20, 18: 21, 19: 22}
_MIRROR.update({v: k for k, v in list(_MIRROR.items())})

# Parent before child; the root is the neck. The head (eyes, ears, face) hangs rigidly off the
# nose and the hands off the wrists; both are scaled as a whole, not bone by bone.
BODY_BONES = (
    (_NECK, L.NOSE),
    (_NECK, L.L_SHOULDER), (_NECK, L.R_SHOULDER),
    (L.L_SHOULDER, L.L_ELBOW), (L.L_ELBOW, L.L_WRIST),
    (L.R_SHOULDER, L.R_ELBOW), (L.R_ELBOW, L.R_WRIST),
    (_NECK, L.L_HIP), (_NECK, L.R_HIP),
    (L.L_HIP, 13), (13, 15), (L.R_HIP, 14), (14, 16),
    (15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22),
)
HEAD_POINTS = (L.L_EYE, L.R_EYE, L.L_EAR, L.R_EAR) + L.FACE
_PALM = (5, 9, 13, 17)  # hand-local MCPs of index, middle, ring, pinky (0 is the wrist)
_HANDS = ((L.LEFT_HAND, L.L_WRIST, (L.L_ELBOW, L.L_WRIST)), (L.RIGHT_HAND, L.R_WRIST, (L.R_ELBOW, L.R_WRIST)))
_TYPICAL_Q = 90.0  # percentile of a length over time taken as its un-foreshortened value


def _extend(kp: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """xy (..., 134, 2) and validity (..., 134) with the virtual neck appended."""
    xy = kp[..., :2]
    valid = kp[..., 2] >= min_score
    neck = 0.5 * (xy[..., L.L_SHOULDER, :] + xy[..., L.R_SHOULDER, :])
    nvalid = valid[..., L.L_SHOULDER] & valid[..., L.R_SHOULDER]
    return (np.concatenate([xy, neck[..., None, :]], -2),
            np.concatenate([valid, nvalid[..., None]], -1))


def umeyama_2d(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum ||dst - (s R src + t)||^2, no reflection (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var_s = (a * a).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("umeyama_2d: source points coincide; no scale can be fitted")
    cov = b.T @ a / len(src)
    U, sig, Vt = np.linalg.svd(cov)
    d = np.array([1.0, np.sign(np.linalg.det(U @ Vt)) or 1.0])
    R = U @ np.diag(d) @ Vt
    s = float((sig * d).sum() / var_s)
    t = mu_d - s * R @ mu_s
    return s, R, t


def align_to_reference(kp, reference, min_score: float = DEFAULT_MIN_SCORE, *,
                       preserve_foreshortening: bool = True, max_ratio: float = 2.0) -> np.ndarray:
    """Fit keypoints (T, 133, 3) to a reference pose (133, 3) of the person to animate.

    1. Similarity (scale, rotation, translation; Umeyama) from the sequence's time-mean torso
       points (shoulders, their midpoint the neck, the nose, and the hips when the reference shows
       both) to the reference's, applied to every frame; the translation then puts the mean neck
       exactly on the reference's neck (the root of the retarget).
    2. Bone-length retarget from the neck outwards (neck->nose, neck->shoulders->elbows->wrists,
       neck->hips->knees->ankles->feet): each bone keeps its direction and gets the reference's
       length. With ``preserve_foreshortening`` (default) a bone's per-frame length is scaled by
       reference / typical length (typical = 90th percentile over time), so a bone at its typical
       length has exactly the reference's length and depth foreshortening of the motion survives;
       otherwise every frame gets exactly the reference's length.
       Eyes, ears and face follow the nose, scaled by the reference's head size; each hand follows
       its wrist, scaled by the reference's palm size (wrist to finger bases).
    Bones that the reference lacks (score < min_score) take the mirror bone's ratio, else keep the
    similarity's scale; ratios are clamped to [1/max_ratio, max_ratio] against detection errors.
    Scores are returned unchanged; missing points come back as (0, 0, 0).
    """
    kp = np.array(kp, dtype=np.float64, copy=True)
    ref = np.asarray(reference, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"align_to_reference: expected keypoints (T, 133, 3), got {kp.shape}")
    if ref.ndim == 3 and ref.shape[0] == 1:
        ref = ref[0]
    if ref.shape != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"align_to_reference: expected a reference pose (133, 3), got {ref.shape}")
    xy, valid = _extend(kp, min_score)
    rxy, rvalid = _extend(ref, min_score)

    # ---- 1. similarity on the torso
    def mean_pt(i):
        m = valid[:, i]
        return xy[m, i].mean(0) if m.any() else None

    torso = [L.L_SHOULDER, L.R_SHOULDER, _NECK, L.NOSE]
    if rvalid[L.L_HIP] and rvalid[L.R_HIP] and valid[:, L.L_HIP].any() and valid[:, L.R_HIP].any():
        torso += [L.L_HIP, L.R_HIP]
    pts = [i for i in torso if rvalid[i] and valid[:, i].any()]
    if len(pts) < 2 or (L.L_SHOULDER not in pts and L.R_SHOULDER not in pts):
        pts = [i for i in range(13) if rvalid[i] and valid[:, i].any()]
    if len(pts) < 2:
        raise ValueError(
            "align_to_reference: the reference pose has fewer than two body points (shoulders, nose, "
            f"hips, ...) with score >= {min_score} that the motion also has; detect the person in the "
            "reference image first (is a person visible and the pose detector output passed?)")
    src = np.stack([mean_pt(i) for i in pts])
    s, R, t = umeyama_2d(src, rxy[pts])
    neck_mean = mean_pt(_NECK)
    if rvalid[_NECK] and neck_mean is not None:
        # The retarget grows the body outwards from the neck: pin the (time-mean) neck exactly on
        # the reference's so that the body stays where the person is; s and R stay the fit's.
        t = rxy[_NECK] - s * R @ neck_mean
    old = xy @ (s * R).T + t                     # similarity-aligned (T, 134, 2)
    new = old.copy()

    # ---- 2. bone lengths
    def typical(lengths, ok):
        return float(np.percentile(lengths[ok], _TYPICAL_Q)) if ok.any() else 0.0

    def bone_ratio(p, c):
        ok = valid[:, p] & valid[:, c]
        if not (rvalid[p] and rvalid[c]) or not ok.any():
            return None
        seq_len = typical(np.linalg.norm(old[:, c] - old[:, p], axis=-1), ok)
        ref_len = float(np.linalg.norm(rxy[c] - rxy[p]))
        if seq_len <= 1e-9 or ref_len <= 1e-9:
            return None
        return ref_len / seq_len

    lo, hi = 1.0 / max_ratio, max_ratio
    ratios = {b: bone_ratio(*b) for b in BODY_BONES}
    for (p, c), r in list(ratios.items()):
        if r is None:
            mirror = (_MIRROR.get(p, p), _MIRROR.get(c, c))
            ratios[(p, c)] = ratios.get(mirror)
    ratios = {b: float(np.clip(r, lo, hi)) if r is not None else 1.0 for b, r in ratios.items()}

    for (p, c) in BODY_BONES:
        ok = valid[:, p] & valid[:, c]
        if not ok.any():
            continue
        off = old[:, c] - old[:, p]
        r = ratios[(p, c)]
        if preserve_foreshortening:
            new_off = r * off
        else:
            length = np.linalg.norm(off, axis=-1, keepdims=True)
            target = r * typical(length[:, 0], ok)
            new_off = np.where(length > 1e-9, off * (target / np.maximum(length, 1e-9)), r * off)
        new[ok, c] = new[ok, p] + new_off[ok]

    # ---- head: eyes, ears, face rigidly around the nose, scaled to the reference head size
    head = [i for i in (L.NOSE,) + HEAD_POINTS if rvalid[i] and valid[:, i].mean() >= 0.5]
    head_ratio = None
    if len(head) >= 2:
        frames = valid[:, head].all(1)
        if frames.any():
            sizes = np.sqrt(((old[:, head] - old[:, head].mean(1, keepdims=True)) ** 2).sum(-1).mean(-1))
            seq_size = typical(sizes, frames)
            ref_size = float(np.sqrt(((rxy[head] - rxy[head].mean(0)) ** 2).sum(-1).mean()))
            if seq_size > 1e-9 and ref_size > 1e-9:
                head_ratio = float(np.clip(ref_size / seq_size, lo, hi))
    if head_ratio is None:
        head_ratio = ratios[(_NECK, L.NOSE)]
    hp = list(HEAD_POINTS)
    anchor = valid[:, L.NOSE]
    new[np.ix_(anchor, hp)] = (new[anchor, L.NOSE][:, None]
                               + head_ratio * (old[np.ix_(anchor, hp)] - old[anchor, L.NOSE][:, None]))

    # ---- hands: around the body wrist, scaled to the reference palm size
    hand_ratio = {}
    for hand, _wrist, forearm in _HANDS:
        hw = hand[0]
        mcps = [hand[k] for k in _PALM if rvalid[hand[k]]]
        r = None
        if rvalid[hw] and len(mcps) >= 2:
            ok = valid[:, [hw] + mcps].all(1)
            if ok.any():
                palm = np.linalg.norm(old[:, mcps] - old[:, hw][:, None], axis=-1).mean(-1)
                seq_palm = typical(palm, ok)
                ref_palm = float(np.linalg.norm(rxy[mcps] - rxy[hw], axis=-1).mean())
                if seq_palm > 1e-9 and ref_palm > 1e-9:
                    r = ref_palm / seq_palm
        hand_ratio[hw] = (r, forearm)
    for hand, wrist, forearm in _HANDS:
        hw = hand[0]
        r, _ = hand_ratio[hw]
        if r is None:
            other = L.RIGHT_HAND[0] if hw == L.LEFT_HAND[0] else L.LEFT_HAND[0]
            r = hand_ratio[other][0]
        if r is None:
            r = ratios[forearm]
        r = float(np.clip(r, lo, hi))
        pts_h = list(hand)
        body_ok = valid[:, wrist]
        # anchor: the body wrist where present (the hand follows the retargeted arm), else the hand's own wrist
        anchor_old = np.where(body_ok[:, None], old[:, wrist], old[:, hw])
        anchor_new = np.where(body_ok[:, None], new[:, wrist], old[:, hw])
        new[:, pts_h] = anchor_new[:, None] + r * (old[:, pts_h] - anchor_old[:, None])

    out = np.zeros_like(kp)
    out[..., :2] = new[:, : L.NUM_KEYPOINTS]
    out[..., 2] = kp[..., 2]
    out[kp[..., 2] <= 0] = 0.0
    return out


# ------------------------------------------------------------------------------------ time


def resample(kp, src_fps: float = EMAGE_FPS, dst_fps: float = 25.0) -> np.ndarray:
    """Linear resampling in time: (T, 133, 3) at src_fps -> (T', 133, 3) at dst_fps.

    T' = round(T * dst / src) (same duration, at least 1); output frame i is the source time
    i / dst_fps, clamped to the last source frame. Coordinates are interpolated linearly, scores
    take the minimum of the two neighbouring frames (a point missing in either is missing).
    """
    kp = np.asarray(kp, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 3 or kp.shape[0] < 1:
        raise ValueError(f"resample: expected keypoints (T >= 1, K, 3), got {kp.shape}")
    for name, v in (("src_fps", src_fps), ("dst_fps", dst_fps)):
        if not (isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v > 0):
            raise ValueError(f"resample: {name} must be a positive number, got {v!r}")
    T = kp.shape[0]
    n_out = max(1, int(round(T * float(dst_fps) / float(src_fps))))
    pos = np.minimum(np.arange(n_out, dtype=np.float64) * float(src_fps) / float(dst_fps), T - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, T - 1)
    w = (pos - i0)[:, None, None]
    a, b = kp[i0], kp[i1]
    out = np.empty((n_out,) + kp.shape[1:], dtype=np.float64)
    out[..., :2] = (1.0 - w) * a[..., :2] + w * b[..., :2]
    exact = (w[..., 0] == 0.0)
    out[..., 2] = np.where(exact, a[..., 2], np.minimum(a[..., 2], b[..., 2]))
    out[out[..., 2] <= 0] = 0.0
    return out


# ------------------------------------------------------------------------------------ the chain


def _as_model(smplx_model) -> SmplxModel:
    if isinstance(smplx_model, SmplxModel):
        return smplx_model
    if smplx_model is None:
        return SmplxModel.load(find_smplx_file())
    if isinstance(smplx_model, (str, os.PathLike)):
        path = os.fspath(smplx_model)
        if os.path.isdir(path):
            return SmplxModel.load(find_smplx_file((path,)))
        return SmplxModel.load(path)
    raise ValueError(f"smplx_model: expected an SmplxModel, a path to an SMPL-X .npz, or None, "
                     f"got {type(smplx_model).__name__}")


def smplx_motion_to_poses(poses, expression, trans, smplx_model, reference_kp, height: int, width: int,
                          fps: float = 25.0, *, betas=None, src_fps: float = EMAGE_FPS,
                          min_score: float = DEFAULT_MIN_SCORE, include_legs: bool = False,
                          flat_hand_mean: bool = False, preserve_foreshortening: bool = True,
                          focal: float = 5000.0, cam_depth: float = 16.0, y_offset: float = 0.8,
                          drop_offscreen: bool = True) -> PoseSequence:
    """SMPL-X motion (poses (T, 165), expression (T, 100), trans (T, 3) at ``src_fps``) -> PoseSequence.

    ``smplx_model``: an :class:`SmplxModel`, a path to the .npz or to its folder, or None to search
    the default folders. ``reference_kp``: the reference image's pose, (133, 3) or a PoseSequence
    (its first frame), or None to keep the raw projection. Points that land outside the H x W
    canvas are marked missing when ``drop_offscreen``.
    """
    model = _as_model(smplx_model)
    joints = model.forward(np.asarray(poses, dtype=np.float64),
                           None if expression is None else np.asarray(expression, dtype=np.float64),
                           None if trans is None else np.asarray(trans, dtype=np.float64),
                           betas=None if betas is None else np.asarray(betas, dtype=np.float64),
                           flat_hand_mean=flat_hand_mean)
    kp = to_wholebody(project(joints, height, width, focal=focal, cam_depth=cam_depth, y_offset=y_offset),
                      include_legs=include_legs)
    if reference_kp is not None:
        ref = reference_kp.keypoints[0] if isinstance(reference_kp, PoseSequence) else np.asarray(reference_kp)
        kp = align_to_reference(kp, ref, min_score=min_score, preserve_foreshortening=preserve_foreshortening)
    kp = resample(kp, src_fps=src_fps, dst_fps=fps)
    if drop_offscreen:
        x, y = kp[..., 0], kp[..., 1]
        kp[~((x >= 0) & (x < width) & (y >= 0) & (y < height))] = 0.0
    return PoseSequence(keypoints=kp.astype(np.float32), height=int(height), width=int(width), fps=fps)


__all__ = [
    "WHOLEBODY_FROM_SMPLX", "project", "to_wholebody", "align_to_reference", "umeyama_2d", "resample",
    "smplx_motion_to_poses",
]
