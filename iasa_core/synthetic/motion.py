"""Pose sequences for synthetic characters: random reference poses and their motion.

* :func:`reference_pose`: a front-facing upper body (COCO-WholeBody 133, pixels) with random
  scale, position and proportions (face, arms, hands), every point on the canvas scored 1.0;
  points that fall off the canvas (hips, legs, feet of an upper-body framing) are scored 0.
* :func:`character_motion`: ``kind="speech"`` animates the reference with the procedural
  audio-driven generator of :mod:`iasa_core.motion.procedural` (mouth, blinks, head, beat
  gestures), its amplitudes varied per clip; ``kind="gesture"`` keeps that generator's face, head
  and body and replaces the arms by random smooth gestures (keyframed joint angles, forward
  kinematics, so bone lengths stay those of the reference).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from iasa_core.audio import AudioClip
from iasa_core.motion.procedural import ProceduralConfig, procedural_poses
from iasa_core.pose import layout as L
from iasa_core.pose.sequence import PoseSequence

MOTION_KINDS = ("speech", "gesture")
MOTION_SAMPLE_RATE = 16000  # the procedural generator's audio features work at 16 kHz
_F = L.FACE[0]


def _rot(v: np.ndarray, ang) -> np.ndarray:
    """Rotate 2-D vectors (..., 2) by ``ang`` (broadcast to v[..., 0]) in image coordinates."""
    c, s = np.cos(ang), np.sin(ang)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


def _face(rng: np.random.Generator) -> np.ndarray:
    """68 iBUG landmarks in face units: origin mid-way between the jaw ends, x right, y down, width 1."""
    jaw_len = rng.uniform(0.78, 0.95)           # ear line to chin
    power = rng.uniform(0.75, 1.0)              # < 1: squarer jaw
    t = np.linspace(np.pi, 0.0, 17)             # image-left jaw end, chin, image-right jaw end
    jaw = np.stack([0.5 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** power, jaw_len * np.sin(t)], -1)
    eye_y = -rng.uniform(0.02, 0.08)
    brow_y = eye_y - rng.uniform(0.12, 0.17)
    bx = np.linspace(0.08, 0.36, 5)
    arch = 0.035 * np.sin(np.linspace(0.3, np.pi - 0.3, 5))
    brows = np.concatenate([np.stack([-bx[::-1], brow_y - arch[::-1]], -1), np.stack([bx, brow_y - arch], -1)])
    nose_y = rng.uniform(0.26, 0.34)
    nw = rng.uniform(0.07, 0.11)
    nose = np.concatenate([np.stack([np.zeros(4), np.linspace(eye_y + 0.02, nose_y, 4)], -1),
                           np.stack([np.linspace(-nw, nw, 5), nose_y + np.array([0.03, 0.045, 0.05, 0.045, 0.03])],
                                    -1)])
    ex, ew = rng.uniform(0.2, 0.24), rng.uniform(0.075, 0.1)   # cartoon eyes: larger than life
    eh = ew * rng.uniform(0.45, 0.62)
    # Corner, two upper-lid points, corner, two lower-lid points (iBUG order per eye).
    shape = np.array([[-1, 0], [-1 / 3, -1], [1 / 3, -1], [1, 0], [1 / 3, 1], [-1 / 3, 1]]) * [ew, eh]
    eyes = np.concatenate([shape + [-ex, eye_y], shape + [ex, eye_y]])
    my, mw = rng.uniform(0.5, 0.6), rng.uniform(0.15, 0.22)
    up, lo = rng.uniform(0.05, 0.09), rng.uniform(0.06, 0.1)
    outer = np.array([[-1, 0], [-0.6, -0.8], [-0.25, -1], [0, -0.85], [0.25, -1], [0.6, -0.8],
                      [1, 0], [0.6, 0.85], [0.25, 1], [0, 1], [-0.25, 1], [-0.6, 0.85]])
    outer = np.stack([outer[:, 0] * mw, my + np.where(outer[:, 1] < 0, up, lo) * outer[:, 1]], -1)
    gap = rng.uniform(0.0, 0.01)
    inner = np.array([[-0.8, 0], [-0.35, -1], [0, -1], [0.35, -1], [0.8, 0], [0.35, 1], [0, 1], [-0.35, 1]])
    inner = np.stack([inner[:, 0] * mw, my + gap * inner[:, 1]], -1)
    return np.concatenate([jaw, brows, nose, eyes, outer, inner])


def _hand(rng: np.random.Generator, curl: float) -> np.ndarray:
    """21 hand points in hand units: wrist at 0, +y along the hand, +x towards the thumb, length 1."""
    base = np.array([
        [0.0, 0.0],
        [0.10, 0.12], [0.20, 0.25], [0.26, 0.37], [0.30, 0.47],       # thumb CMC..tip
        [0.09, 0.45], [0.10, 0.66], [0.10, 0.78], [0.10, 0.89],       # index MCP..tip
        [0.0, 0.47], [0.0, 0.70], [0.0, 0.85], [0.0, 1.0],            # middle
        [-0.08, 0.45], [-0.09, 0.66], [-0.09, 0.79], [-0.09, 0.92],   # ring
        [-0.16, 0.41], [-0.18, 0.57], [-0.19, 0.67], [-0.20, 0.77],   # pinky
    ])
    base = base * [rng.uniform(1.05, 1.3), 1.0]   # wider than a real hand: fingers stay apart
    spread = rng.uniform(0.0, 0.12)
    for k in range(1, 5):  # fan the four fingers about their knuckles, then shorten for the curl
        idx = np.arange(1 + 4 * k, 5 + 4 * k)
        knuckle = base[idx[0]]
        off = _rot(base[idx[1:]] - knuckle, -spread * (k - 2.5))
        base[idx[1:]] = knuckle + off * (1.0 - 0.45 * curl)
    return base


def reference_pose(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random front-facing upper body (133, 3) in pixels on an H x W canvas, points on it scored 1."""
    H, W = int(height), int(width)
    s = min(H, W)
    for attempt in range(200):
        shrink = 0.97 ** attempt  # keep trying smaller figures when a pose does not fit
        sw = rng.uniform(0.3, 0.5) * s * shrink          # shoulder width
        neck = np.array([W / 2 + rng.uniform(-0.08, 0.08) * W, rng.uniform(0.42, 0.62) * H])
        fw = rng.uniform(0.5, 0.66) * sw                   # face width
        face = _face(rng)
        chin_gap = rng.uniform(0.1, 0.2) * sw
        centre = neck - np.array([0.0, chin_gap + face[8, 1] * fw])
        head_roll = rng.uniform(-0.1, 0.1)
        face_px = neck + _rot(centre - neck + face * fw, head_roll)

        kp = np.zeros((L.NUM_KEYPOINTS, 3))
        kp[_F:_F + 68, :2] = face_px
        kp[L.NOSE, :2] = face_px[30]
        kp[L.R_EYE, :2] = face_px[36:42].mean(0)
        kp[L.L_EYE, :2] = face_px[42:48].mean(0)
        jaw_c = (face_px[0] + face_px[16]) / 2
        kp[L.R_EAR, :2] = jaw_c + 1.05 * (face_px[0] - jaw_c) - [0, 0.04 * fw]
        kp[L.L_EAR, :2] = jaw_c + 1.05 * (face_px[16] - jaw_c) - [0, 0.04 * fw]

        half = np.array([sw / 2, rng.uniform(-0.03, 0.03) * sw])
        kp[L.L_SHOULDER, :2], kp[L.R_SHOULDER, :2] = neck + half, neck - half
        torso = rng.uniform(1.1, 1.4) * sw
        hip = rng.uniform(0.28, 0.38) * sw
        kp[L.L_HIP, :2], kp[L.R_HIP, :2] = neck + [hip, torso], neck + [-hip, torso]
        thigh = rng.uniform(1.0, 1.2) * sw
        for k, (h, knee, ankle) in enumerate(((L.L_HIP, 13, 15), (L.R_HIP, 14, 16))):
            kp[knee, :2] = kp[h, :2] + [0, thigh]
            kp[ankle, :2] = kp[knee, :2] + [0, thigh]
            for j in range(3):  # big toe, small toe, heel of each foot (17-19 left, 20-22 right)
                kp[17 + 3 * k + j, :2] = kp[ankle, :2] + [(-1) ** k * 0.1 * sw * (1 - j), 0.1 * sw]

        body_roll = rng.uniform(-0.06, 0.06)
        kp[:, :2] = neck + _rot(kp[:, :2] - neck, body_roll)
        margin = 0.02 * s
        lo, hi = np.array([margin, margin]), np.array([W - 1 - margin, H - 1 - margin])
        l1, l2 = rng.uniform(0.72, 0.9) * sw, rng.uniform(0.62, 0.8) * sw
        hand_len = rng.uniform(0.4, 0.52) * sw
        down = _rot(np.array([0.0, 1.0]), body_roll)
        arms_fit = True
        for side, (sho, elb, wri, hand) in enumerate(((L.R_SHOULDER, L.R_ELBOW, L.R_WRIST, L.RIGHT_HAND),
                                                      (L.L_SHOULDER, L.L_ELBOW, L.L_WRIST, L.LEFT_HAND))):
            out = 1.0 if side == 0 else -1.0    # positive rotation of "down" moves the right arm outwards
            for k in range(20):  # an arm that leaves the canvas is bent more before the figure shrinks
                a1 = out * math.radians(rng.uniform(4, 30))
                a2 = a1 - out * math.radians(rng.uniform(10, 40 + 5 * k))
                E = kp[sho, :2] + l1 * _rot(down, a1)
                Wr = E + l2 * _rot(down, a2)
                # Hand frame: +y along the hand, +x towards the thumb, which faces the body midline.
                y_ax = _rot(down, a2 + rng.uniform(-0.35, 0.35))
                x_ax = np.array([-y_ax[1], y_ax[0]])
                if x_ax[0] * (neck[0] - Wr[0]) < 0:
                    x_ax = -x_ax
                local = _hand(rng, rng.uniform(0.0, 0.7)) * hand_len
                hand_pts = Wr + np.outer(local[:, 0], x_ax) + np.outer(local[:, 1], y_ax)
                pts = np.concatenate([E[None], Wr[None], hand_pts])
                # Hands stay on their own side of the body: a rest pose, not crossed arms.
                own_side = out * (neck[0] - Wr[0]) > 0.12 * sw
                if own_side and ((pts >= lo) & (pts <= hi)).all():
                    break
            else:
                arms_fit = False
            kp[elb, :2], kp[wri, :2], kp[list(hand), :2] = E, Wr, hand_pts
        if not arms_fit:
            continue

        inside = ((kp[:, :2] >= margin) & (kp[:, :2] <= [W - 1 - margin, H - 1 - margin])).all(1)
        needed = list(range(0, 11)) + list(L.FACE) + list(L.LEFT_HAND) + list(L.RIGHT_HAND)
        # The skull and hair reach well above the brows: keep most of them on the canvas too.
        head_top = kp[_F + 17:_F + 27, 1].min() - 0.6 * fw
        if inside[needed].all() and head_top >= 0:
            kp[:, 2] = np.where(inside, 1.0, 0.0)
            kp[~inside, :2] = 0.0
            return kp.astype(np.float32)
    raise RuntimeError(f"reference_pose: no upper body fits a {W}x{H} (width x height) canvas")  # pragma: no cover


# ---------------------------------------------------------------------- motion


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _keyframes(rng: np.random.Generator, t: np.ndarray, n: int, draw) -> np.ndarray:
    """(T, n) smooth (C1) track through random key values ``draw()`` at random key times."""
    times, values = [0.0], [np.zeros(n)]          # every gesture starts from the reference pose
    while times[-1] < t[-1] + 1e-9:
        times.append(times[-1] + rng.uniform(0.4, 1.2))
        # Returns to rest now and then, but never before the first gesture.
        values.append(np.zeros(n) if len(values) > 1 and rng.uniform() < 0.2 else draw())
    kt, kv = np.asarray(times), np.stack(values)
    i = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
    w = _smoothstep((t - kt[i]) / (kt[i + 1] - kt[i]))[:, None]
    return kv[i] + (kv[i + 1] - kv[i]) * w


def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _angle(v: np.ndarray) -> np.ndarray:
    return np.arctan2(v[..., 1], v[..., 0])


def _gesture_arms(base: np.ndarray, ref: np.ndarray, fps: float, height: int, width: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Replace the arms and hands of ``base`` (T, 133, 3) with random smooth gestures."""
    T = len(base)
    t = np.arange(T) / fps
    out = base.copy()
    xy = base[..., :2].astype(np.float64)
    r = ref[:, :2].astype(np.float64)
    # Body frame per frame: "down" is perpendicular to the shoulder line.
    sh = xy[:, L.L_SHOULDER] - xy[:, L.R_SHOULDER]
    th_down = _angle(np.stack([-sh[:, 1], sh[:, 0]], -1))
    sh_r = r[L.L_SHOULDER] - r[L.R_SHOULDER]
    th_down_r = float(_angle(np.array([-sh_r[1], sh_r[0]])))
    neck_r = (r[L.L_SHOULDER] + r[L.R_SHOULDER]) / 2

    def draw():
        # abduction, elbow flexion (rad, offsets from the reference), wrist bend, finger curl
        # Mostly raising moves: the rest pose has the hands low, often near the bottom of the frame.
        return np.array([rng.uniform(-0.1, 1.4), rng.uniform(-0.3, 1.7), rng.uniform(-0.5, 0.5),
                         rng.uniform(-0.3, 1.0)])

    tracks = [_keyframes(rng, t, 4, draw), _keyframes(rng, t, 4, draw)]
    if rng.uniform() < 0.3:  # symmetric two-handed gestures now and then
        tracks[1] = tracks[0]
    margin = 2.0
    lo, hi = np.array([margin, margin]), np.array([width - 1 - margin, height - 1 - margin])
    win = max(1, int(round(0.2 * fps)))
    for (sho, elb, wri, hand), tr in zip(((L.R_SHOULDER, L.R_ELBOW, L.R_WRIST, L.RIGHT_HAND),
                                          (L.L_SHOULDER, L.L_ELBOW, L.L_WRIST, L.LEFT_HAND)), tracks,
                                         strict=True):
        S_r, E_r, W_r = r[sho], r[elb], r[wri]
        u, f = E_r - S_r, W_r - E_r
        l1, l2 = float(np.linalg.norm(u)), float(np.linalg.norm(f))
        if min(l1, l2) < 1e-3 or ref[[sho, elb, wri], 2].min() < 0.3:
            continue
        lateral = S_r - neck_r
        s1 = 1.0 if (-u[1] * lateral[0] + u[0] * lateral[1]) >= 0 else -1.0  # rotation sign that abducts
        s2 = -s1                                                            # flexion turns inwards
        abd_r = s1 * float(_wrap(_angle(u) - th_down_r))
        flex_r = s2 * float(_wrap(_angle(f) - _angle(u)))
        hand_idx = list(hand)
        local = _rot(r[hand_idx] - W_r, -float(_angle(f)))  # hand in the forearm frame (+x along it)
        fingers = np.arange(21)
        knuckle = np.where(fingers == 0, 0, 1 + 4 * ((fingers - 1) // 4))  # each point's finger base

        def place(scale: np.ndarray, tr=tr, sho=sho, l1=l1, l2=l2, s1=s1, s2=s2, abd_r=abd_r,
                  flex_r=flex_r, local=local, knuckle=knuckle) -> np.ndarray:
            """Elbow, wrist and 21 hand points (T, 23, 2) for a per-frame gesture scale."""
            abd = np.clip(abd_r + scale * tr[:, 0], -0.35, 2.6)
            flex = np.clip(flex_r + scale * tr[:, 1], 0.0, 2.6)
            th1 = th_down + s1 * abd
            th2 = th1 + s2 * flex
            E = xy[:, sho] + l1 * np.stack([np.cos(th1), np.sin(th1)], -1)
            Wp = E + l2 * np.stack([np.cos(th2), np.sin(th2)], -1)
            # Curling seen from the front: each finger shortens towards its knuckle.
            curl = np.clip(scale * tr[:, 3], 0.0, 1.0)[:, None, None]
            curled = local[knuckle] + (local - local[knuckle]) * (1.0 - 0.4 * curl)
            hand_pts = Wp[:, None] + _rot(curled, (th2 + scale * tr[:, 2])[:, None])
            return np.concatenate([E[:, None], Wp[:, None], hand_pts], 1)

        # Largest gesture scale per frame that keeps the arm on the canvas, then smoothed: a running
        # minimum and a box average of the same width never exceed the per-frame limit.
        # A scale is fine where it takes no point further off the canvas than the rest pose does
        # (the procedural sway may already push a low hand over the edge).
        def overshoot(p: np.ndarray) -> np.ndarray:
            return np.maximum(np.maximum(lo - p, p - hi), 0.0).max(axis=(1, 2))

        rest = overshoot(place(np.zeros(T))) + 1e-6
        allowed = np.zeros(T)
        for c in (0.2, 0.4, 0.6, 0.8, 1.0):
            ok = overshoot(place(np.full(T, c))) <= rest
            allowed = np.where(ok & (allowed >= c - 0.2 - 1e-9), c, allowed)
        allowed = ndimage.minimum_filter1d(allowed, 2 * win + 1, mode="nearest")
        allowed = ndimage.uniform_filter1d(allowed, 2 * win + 1, mode="nearest")
        final = place(allowed)
        out[:, elb, :2], out[:, wri, :2], out[:, hand_idx, :2] = final[:, 0], final[:, 1], final[:, 2:]
    present = ref[:, 2] > 0
    out[:, present, 0] = np.clip(out[:, present, 0], 0.0, width - 1)
    out[:, present, 1] = np.clip(out[:, present, 1], 0.0, height - 1)
    return out.astype(np.float32)


def _speech_config(rng: np.random.Generator, gestures: bool) -> ProceduralConfig:
    """Per-clip variation of the procedural generator (lively vs calm speakers)."""
    return ProceduralConfig(
        mouth_max_open=float(rng.uniform(0.1, 0.2)),
        head_pitch_nod_deg=float(rng.uniform(1.5, 5.0)),
        head_roll_deg=float(rng.uniform(1.0, 4.0)),
        head_turn_deg=float(rng.uniform(1.0, 5.0)),
        gesture_amplitude=float(rng.uniform(0.3, 0.7)) if gestures else 0.0,
        gesture_speech_hold=float(rng.uniform(0.15, 0.45)) if gestures else 0.0,
        blink_interval_s=float(rng.uniform(2.5, 5.0)),
        sway_deg=float(rng.uniform(0.5, 2.0)),
    )


def character_motion(audio: AudioClip, ref: np.ndarray, fps: float, rng: np.random.Generator,
                     kind: str = "speech", *, height: int, width: int) -> PoseSequence:
    """Animate the reference pose along ``audio``: one pose per video frame (round(duration * fps))."""
    if kind not in MOTION_KINDS:
        raise ValueError(f"character_motion: kind must be one of {MOTION_KINDS}, got {kind!r}")
    ref = np.asarray(ref, dtype=np.float32)
    n = max(1, int(round(audio.duration * fps)))
    mono = audio.mono(MOTION_SAMPLE_RATE)
    seed = int(rng.integers(2**31 - 1))
    cfg = _speech_config(rng, gestures=kind == "speech")
    seq = procedural_poses(mono, MOTION_SAMPLE_RATE, ref, height, width, fps=fps, seed=seed, config=cfg,
                           num_frames=n)
    if kind == "speech":
        return seq
    kp = _gesture_arms(seq.keypoints, ref, fps, height, width, rng)
    return PoseSequence(keypoints=kp, height=height, width=width, fps=fps)
