"""Deterministic synthetic upper-body pose sequences (test fixtures, benchmarks, mask previews)."""

from __future__ import annotations

import numpy as np

from . import layout as L


def _rot(v: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


def _face_points(center: np.ndarray, size: float, mouth_open: float) -> np.ndarray:
    """68 face landmarks (iBUG order) around ``center`` for a face ``size`` pixels wide."""
    u = size / 2.0
    ang = np.linspace(np.pi, 0.0, 17)  # image-left ear, chin, image-right ear
    jaw = np.stack([np.cos(ang) * u, np.sin(ang) * u * 1.15 + 0.05 * u], -1)
    brows = np.concatenate([
        np.stack([np.linspace(-0.8, -0.2, 5), -0.55 - 0.08 * np.sin(np.linspace(0, np.pi, 5))], -1),
        np.stack([np.linspace(0.2, 0.8, 5), -0.55 - 0.08 * np.sin(np.linspace(0, np.pi, 5))], -1),
    ]) * u
    nose = np.concatenate([
        np.stack([np.zeros(4), np.linspace(-0.35, 0.05, 4)], -1),
        np.stack([np.linspace(-0.2, 0.2, 5), np.full(5, 0.12)], -1),
    ]) * u
    eye_t = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    eye = np.stack([0.18 * np.cos(eye_t), 0.07 * np.sin(eye_t)], -1)
    eyes = np.concatenate([eye + [-0.4, -0.3], eye + [0.4, -0.3]]) * u
    outer_t = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    inner_t = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    open_y = 0.05 + 0.25 * mouth_open
    outer = np.stack([0.38 * np.cos(outer_t), open_y * np.sin(-outer_t) + 0.45], -1)
    inner = np.stack([0.25 * np.cos(inner_t), 0.7 * open_y * np.sin(-inner_t) + 0.45], -1)
    pts = np.concatenate([jaw, brows, nose, eyes, outer * u, inner * u])
    return pts + center


def _hand_points(wrist: np.ndarray, direction: float, size: float, curl: float) -> np.ndarray:
    """21 hand points (wrist, then thumb..pinky, 4 each) fanning out along ``direction``."""
    pts = [np.zeros(2)]
    for finger, spread in enumerate(np.linspace(-0.9, 0.6, 5)):
        base = 0.35 if finger else 0.2
        step = size * (0.17 if finger else 0.15)
        a = direction + spread * 0.6
        p = np.array([np.cos(a), np.sin(a)]) * size * base
        for _ in range(4):
            pts.append(p.copy())
            a = a + curl * 0.35
            p = p + np.array([np.cos(a), np.sin(a)]) * step
    return np.stack(pts) + wrist


def synthetic_keypoints(num_frames: int, height: int, width: int, seed: int = 0,
                        fps: float = 25.0) -> np.ndarray:
    """Return (T, 133, 3) keypoints of a talking, gesturing upper body framed in H x W."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames) / fps
    s = min(height, width)
    kp = np.zeros((num_frames, L.NUM_KEYPOINTS, 3), dtype=np.float64)

    sway = np.stack([0.02 * s * np.sin(2 * np.pi * 0.21 * t + rng.uniform(0, 6)),
                     0.01 * s * np.sin(2 * np.pi * 0.13 * t + rng.uniform(0, 6))], -1)
    neck = np.array([width / 2, height * 0.42]) + sway
    half_sho = 0.19 * s
    tilt = 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))
    sho_vec = _rot(np.array([half_sho, 0.0]), tilt)
    l_sho, r_sho = neck + sho_vec, neck - sho_vec  # subject's left appears on image right
    head_c = neck + _rot(np.array([0.0, -0.2 * s]), 0.5 * tilt + 0.08 * np.sin(2 * np.pi * 0.5 * t))
    upper, fore = 0.2 * s, 0.18 * s

    def arm(sho, side, phase, amp):
        a1 = np.pi / 2 - side * (0.35 + amp * (0.5 + 0.5 * np.sin(2 * np.pi * 0.4 * t + phase)))
        elbow = sho + upper * np.stack([np.cos(a1), np.sin(a1)], -1)
        a2 = a1 - side * (0.6 + 1.3 * amp * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t + 1.7 * phase)))
        wrist = elbow + fore * np.stack([np.cos(a2), np.sin(a2)], -1)
        return elbow, wrist, a2

    l_elb, l_wri, l_dir = arm(l_sho, -1.0, rng.uniform(0, 6), rng.uniform(0.5, 1.0))
    r_elb, r_wri, r_dir = arm(r_sho, 1.0, rng.uniform(0, 6), rng.uniform(0.5, 1.0))
    body = {
        L.NOSE: head_c + [0, 0.01 * s], L.L_EYE: head_c + [0.045 * s, -0.03 * s],
        L.R_EYE: head_c + [-0.045 * s, -0.03 * s], L.L_EAR: head_c + [0.09 * s, -0.01 * s],
        L.R_EAR: head_c + [-0.09 * s, -0.01 * s], L.L_SHOULDER: l_sho, L.R_SHOULDER: r_sho,
        L.L_ELBOW: l_elb, L.R_ELBOW: r_elb, L.L_WRIST: l_wri, L.R_WRIST: r_wri,
        L.L_HIP: neck + [0.12 * s, 0.5 * s], L.R_HIP: neck + [-0.12 * s, 0.5 * s],
    }
    for idx, xy in body.items():
        kp[:, idx, :2] = xy
        kp[:, idx, 2] = 0.95
    for idx in (L.L_HIP, L.R_HIP):  # hips fall below an upper-body frame: low confidence
        kp[:, idx, 2] = np.where(kp[:, idx, 1] < height, 0.9, 0.05)

    speech = np.clip(0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) * np.sin(2 * np.pi * 0.37 * t + 1), 0, 1)
    curl = 0.5 + 0.5 * np.sin(2 * np.pi * 0.9 * t)
    for f in range(num_frames):
        kp[f, L.FACE[0]:L.FACE[-1] + 1, :2] = _face_points(head_c[f] + [0, 0.01 * s], 0.17 * s, speech[f])
        kp[f, L.LEFT_HAND[0]:L.LEFT_HAND[-1] + 1, :2] = _hand_points(l_wri[f], l_dir[f], 0.09 * s, curl[f])
        kp[f, L.RIGHT_HAND[0]:L.RIGHT_HAND[-1] + 1, :2] = _hand_points(r_wri[f], r_dir[f], 0.09 * s,
                                                                       -curl[f])
    kp[:, L.FACE[0]:, 2] = 0.9
    inside = (kp[..., 0] >= 0) & (kp[..., 0] < width) & (kp[..., 1] >= 0) & (kp[..., 1] < height)
    kp[..., 2] = np.where(inside, kp[..., 2], 0.0)
    return kp.astype(np.float32)
