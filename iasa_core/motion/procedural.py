"""Procedural audio-driven motion: the embedded default of stage 1 that needs no weights.

The person's reference pose (133 COCO-WholeBody keypoints from the photo) is animated from audio
features (:mod:`iasa_core.motion.features`):

* mouth: the lower lips and the lower jaw contour open with loudness (fully while voiced, partly
  for unvoiced sounds) and close in silence, also closing a mouth that is open in the photo;
* eyes: blinks at random (seeded) times, every ~4 s, more likely in pauses, ~150 ms long;
* head: a rigid rotation / shift of all head points about the neck: nods with pitch movements and
  a short accent nod on gesture beats, plus a slow idle drift;
* arms: beat gestures at the strongest onsets (with a refractory period) as smooth strokes of the
  shoulder -> elbow -> wrist chain, solved with 2-D forward kinematics on joint angles so bone
  lengths stay exactly those of the photo, with angles clamped to a plausible range; while speech
  goes on the hands hover a little raised (gesture space) and drop back in silence;
* hands: move rigidly with the forearm, fingers open on strokes and curl slightly at rest;
* body: subtle idle sway (rotation about the pelvis) and breathing (shoulders rise and fall).

Everything is in pixels of the reference canvas; every signal is smooth (C1 envelopes, Gaussian
smoothing) so there are no jumps between frames; arm strokes are scaled down smoothly where they
would leave the canvas. Deterministic for a given seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..pose import layout as L
from ..pose.sequence import PoseSequence
from .features import AudioFeatures, audio_features

HEAD = (L.NOSE, L.L_EYE, L.R_EYE, L.L_EAR, L.R_EAR) + L.FACE

# iBUG-68 face landmarks (WholeBody index = 23 + iBUG index).
_F = L.FACE[0]
INNER_LIP_PAIRS = ((_F + 61, _F + 67), (_F + 62, _F + 66), (_F + 63, _F + 65))  # (upper, lower)
INNER_LIP_PROFILE = (0.75, 1.0, 0.75)                 # the middle opens most
# Outer lower lip 55..59 follows the inner lower lip: (point, inner pair index, weight).
OUTER_LOWER = ((_F + 55, 2, 0.5), (_F + 56, 2, 1.0), (_F + 57, 1, 1.0), (_F + 58, 0, 1.0), (_F + 59, 0, 0.5))
MOUTH_CORNERS = (_F + 48, _F + 54, _F + 60, _F + 64)
CHIN = _F + 8
RIGHT_EYE = tuple(range(_F + 36, _F + 42))            # subject's right eye (image left)
LEFT_EYE = tuple(range(_F + 42, _F + 48))
EYE_CORNERS = ((_F + 36, _F + 39), (_F + 42, _F + 45))

ARMS = ((L.L_SHOULDER, L.L_ELBOW, L.L_WRIST, L.LEFT_HAND),
        (L.R_SHOULDER, L.R_ELBOW, L.R_WRIST, L.RIGHT_HAND))
LEFT, RIGHT = 0, 1

REFERENCE_ERROR = ("the reference image needs a visible face and shoulders (an upper-body photo "
                   "of one person facing the camera)")


@dataclass
class ProceduralConfig:
    """Amplitudes and rates of procedural motion. Lengths are fractions of body measures."""

    # Keypoints with a score below this are not used as anchors (DWPose's usual 0.3).
    min_score: float = 0.3

    # --- mouth and jaw
    # Inner-lip gap at full loudness as a fraction of face height (brow to chin): about 2 cm
    # of a 13-15 cm face in lively speech.
    mouth_max_open: float = 0.14
    # Gap in silence (fraction of face height); 0 = lips touch.
    mouth_rest_open: float = 0.0
    # Close a mouth that is open in the photo during silence (otherwise keep the photo's gap).
    close_reference_mouth: bool = True
    # Unvoiced loud sounds (fricatives, plosive bursts) open the mouth only partly.
    mouth_unvoiced_open: float = 0.45
    # Loudness -> opening curve: < 1 opens a little already at moderate loudness.
    mouth_gamma: float = 0.8
    # Smoothing of the mouth track (s): short, lips follow syllables at 4-8 Hz.
    mouth_smooth_s: float = 0.025
    # Fraction of the lower-lip drop the chin follows (mandible carries the lower lip).
    jaw_follow: float = 0.75
    # Fraction of the middle drop the mouth corners follow.
    corner_follow: float = 0.2

    # --- blinks
    blink_interval_s: float = 4.0        # mean time between blinks (people blink every 3-5 s)
    blink_min_interval_s: float = 1.2    # no blink sooner than this after the last one
    blink_duration_s: float = 0.15       # closing + opening
    blink_pause_boost: float = 3.0       # hazard multiplier in pauses (blinks cluster in pauses)
    blink_depth: float = 1.0             # 1 = lids meet

    # --- head (rigid about the neck)
    head_pitch_nod_deg: float = 3.0      # nod per pitch z-unit (higher pitch lifts the chin)
    head_onset_nod_deg: float = 2.5      # accent nod on a gesture beat
    head_roll_deg: float = 2.0           # idle tilt drift amplitude
    head_turn_deg: float = 3.0           # idle turn drift (seen as a small sideways shift)
    head_drift_hz: tuple[float, float] = (0.05, 0.25)
    head_smooth_s: float = 0.12

    # --- arm beat gestures
    # Wrist travel of a full gesture (speech hold + strongest stroke) as a fraction of arm length
    # (upper arm + forearm): a beat moves the hand about a hand length or two.
    gesture_amplitude: float = 0.45
    # Share of that travel done by raising the upper arm outward (the rest by elbow flexion).
    gesture_abduction_share: float = 0.35
    gesture_min_strength: float = 0.25   # onsets weaker than this (0..1) make no stroke
    gesture_refractory_s: float = 0.5    # one stroke per ~2 syllables at most
    gesture_lead_s: float = 0.05         # stroke starts this long before the onset ...
    gesture_rise_s: float = 0.18         # ... so its fastest point lands just after the onset
    gesture_hold_s: float = 0.12
    gesture_decay_s: float = 0.7         # retraction is slower than the stroke
    # While speaking the hands stay raised by this fraction of a stroke (gesture space).
    gesture_speech_hold: float = 0.3
    gesture_speech_smooth_s: float = 0.35
    # Probabilities that a stroke uses the right arm, the left arm, both.
    gesture_arm_probs: tuple[float, float, float] = (0.45, 0.3, 0.25)
    # Plausible joint ranges: elbow flexion (0 = straight) and shoulder abduction away from the
    # body axis (degrees); a photo already outside a range widens it to include the photo.
    elbow_flex_range_deg: tuple[float, float] = (-5.0, 150.0)
    shoulder_abduction_range_deg: tuple[float, float] = (-30.0, 100.0)
    # Canvas margin (pixels) kept by visible arm and hand points.
    canvas_margin: float = 2.0

    # --- hands
    hand_open: float = 0.6               # finger opening on a stroke (0..1)
    hand_fidget: float = 0.15            # slow random curl/open at rest
    finger_curl: float = 0.3             # max shortening of a finger when fully curled
    finger_spread_deg: float = 10.0      # spread of the outer fingers when fully open

    # --- idle body
    sway_deg: float = 1.0                # torso rotation about the pelvis
    sway_shift: float = 0.006            # torso shift, fraction of shoulder width
    sway_hz: tuple[float, float] = (0.05, 0.2)
    breath_period_s: float = 4.0         # one breath every ~4 s (15 / min at rest)
    breath_amplitude: float = 0.01       # shoulder rise, fraction of shoulder width


# ---------------------------------------------------------------------- small helpers


def _rot(v: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """Rotate 2-D vectors v (..., 2) by ang (broadcast to v[..., 0]) in image coordinates."""
    c, s = np.cos(ang), np.sin(ang)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], -1)


def _perp(v: np.ndarray) -> np.ndarray:
    """Direction a point at v moves when rotated by a small positive angle."""
    return np.stack([-v[..., 1], v[..., 0]], -1)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([0.0, 1.0])


def _wrap(a: np.ndarray | float) -> np.ndarray:
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _gauss(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    if sigma_frames < 0.3:
        return np.asarray(x, dtype=np.float64)
    return ndimage.gaussian_filter1d(np.asarray(x, dtype=np.float64), sigma_frames, axis=0, mode="nearest")


def _drift(rng: np.random.Generator, t: np.ndarray, band: tuple[float, float], n: int = 3) -> np.ndarray:
    """Smooth random signal in about [-1, 1]: a few sinusoids with random rates and phases."""
    freqs = rng.uniform(band[0], band[1], n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.uniform(0.5, 1.0, n)
    out = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)
    return out / amps.sum() * 1.6


def _stroke(t: np.ndarray, t0: np.ndarray, amp: np.ndarray, lead: float, rise: float, hold: float,
            decay: float) -> np.ndarray:
    """Sum of C1 bumps (smoothstep up, hold, smoothstep down), one per (t0, amp): (T,); ``t`` ascending.

    A bump is exactly zero outside [t0 - lead, t0 - lead + rise + hold + decay], so each is added only on
    that span (a beats x frames matrix took about 1 GB at 10 minutes of speech). The additions are those of
    a sum over all beats in beat order, so the values are the same."""
    out = np.zeros_like(t, dtype=np.float64)
    if len(t0) == 0:
        return out
    start = t0 - lead
    span = rise + hold + decay
    margin = 1e-6 * (1.0 + span)  # frames just outside a span add an exact zero: err on including them
    lo = np.searchsorted(t, start - margin, side="left")
    hi = np.searchsorted(t, start + span + margin, side="right")
    for j in range(len(t0)):
        x = t[lo[j]:hi[j]] - start[j]
        up = _smoothstep(x / rise)
        down = 1.0 - _smoothstep((x - rise - hold) / decay)
        out[lo[j]:hi[j]] += amp[j] * up * down
    return out


def _beat_track(t: np.ndarray, t0: np.ndarray, amp: np.ndarray, lead: float, rise: float, hold: float,
                decay: float, recoil: float = 0.5) -> np.ndarray:
    """One arm's stroke level over time, from its beats (sorted times t0, amplitudes amp).

    Key poses joined by smoothstep (zero velocity at every key, so C1): rest -> (stroke) apex ->
    hold -> (retraction) rest. When the next beat comes before the retraction ends, the hand
    drops part way (to at most ``recoil`` of the apex, a preparation) and strokes again, so each beat
    is a fast stroke that starts just before its onset and not a slow drift.
    """
    if len(t0) == 0:
        return np.zeros_like(t)
    keys: list[tuple[float, float]] = []
    n = len(t0)
    for j in range(n):
        start = t0[j] - lead
        apex = start + rise
        if j == 0 or keys[-1][0] <= start - 1e-6 and keys[-1][1] == 0.0:
            keys.append((start, 0.0))
        keys.append((apex, float(amp[j])))
        end_hold = apex + hold
        if j + 1 < n:
            nxt = t0[j + 1] - lead
            if end_hold + decay > nxt:                      # interrupted: partial drop, then stroke
                a1, a2 = float(amp[j]), float(amp[j + 1])
                down = min(end_hold, apex + 0.25 * (nxt - apex))
                q = float(np.clip((nxt - down) / decay, 0.0, 1.0))
                level = a1 * min(recoil, 1.0 - q * q * (3 - 2 * q))
                # The drop must stay slower than the stroke that follows (speed ratio <= 0.6).
                c = 0.6 * (nxt - down) / rise
                if c < 1.0:
                    level = max(level, (a1 - c * a2) / (1.0 - c))
                level = min(level, a1, a2)
                keys.append((down, a1))
                keys.append((nxt, level))
                continue
        keys.append((end_hold, float(amp[j])))
        keys.append((end_hold + decay, 0.0))
    kt = np.array([k[0] for k in keys])
    kv = np.array([k[1] for k in keys])
    i = np.clip(np.searchsorted(kt, t, side="right") - 1, 0, len(kt) - 2)
    span = np.maximum(kt[i + 1] - kt[i], 1e-9)
    w = _smoothstep((t - kt[i]) / span)
    out = kv[i] + (kv[i + 1] - kv[i]) * w
    out = np.where(t < kt[0], 0.0, out)
    return np.where(t >= kt[-1], kv[-1], out)


def _visible(ref: np.ndarray, idx, thr: float) -> bool:
    return bool((ref[list(np.atleast_1d(idx)), 2] >= thr).all())


# ---------------------------------------------------------------------- reference analysis


@dataclass
class _Anchors:
    neck: np.ndarray          # (2,) pivot of the head
    down: np.ndarray          # body axis, pointing from head to hips
    pelvis: np.ndarray        # pivot of the sway
    shoulder_width: float
    face_down: np.ndarray     # head axis (perpendicular to the eye line, towards the chin)
    face_height: float
    head_radius: float        # neck to face centre


def _anchors(ref: np.ndarray, thr: float) -> _Anchors:
    vis = ref[:, 2] >= thr
    face_idx = np.array(L.FACE)
    n_face = int(vis[face_idx].sum())
    has_face = n_face >= len(face_idx) // 2 or (vis[L.NOSE] and (vis[L.L_EYE] or vis[L.R_EYE]))
    shoulders = [i for i in (L.L_SHOULDER, L.R_SHOULDER) if vis[i]]
    if not has_face or not shoulders:
        missing = " and ".join(m for m, ok in (("face", has_face), ("shoulders", bool(shoulders))) if not ok)
        raise ValueError(f"procedural motion: {REFERENCE_ERROR}; the reference pose has no {missing} "
                         f"(keypoint scores below {thr})")
    head_pts = [i for i in HEAD if vis[i]]
    face_c = ref[head_pts, :2].mean(0)
    xy = ref[:, :2].astype(np.float64)

    if len(shoulders) == 2:
        ls, rs = xy[L.L_SHOULDER], xy[L.R_SHOULDER]
        neck = (ls + rs) / 2
        width = float(np.linalg.norm(ls - rs))
        down = _unit(_perp(ls - rs))
        if np.dot(down, neck - face_c) < 0:
            down = -down
    else:  # one shoulder: the neck lies under the face at shoulder height
        s = xy[shoulders[0]]
        neck = np.array([face_c[0], s[1]])
        width = 2.0 * max(abs(s[0] - face_c[0]), 1.0)
        down = _unit(neck - face_c) if np.linalg.norm(neck - face_c) > 1 else np.array([0.0, 1.0])
    width = max(width, 1.0)

    hips = [i for i in (L.L_HIP, L.R_HIP) if vis[i]]
    pelvis = xy[hips].mean(0) if len(hips) == 2 else neck + down * 1.4 * width

    # Head axis from the eye line (body eyes, else face-landmark eye centres).
    if vis[L.L_EYE] and vis[L.R_EYE]:
        eye_vec = xy[L.L_EYE] - xy[L.R_EYE]
    elif _visible(ref, LEFT_EYE + RIGHT_EYE, thr):
        eye_vec = xy[list(LEFT_EYE)].mean(0) - xy[list(RIGHT_EYE)].mean(0)
    else:
        eye_vec = None
    if eye_vec is not None and np.linalg.norm(eye_vec) > 1e-6:
        face_down = _unit(_perp(eye_vec))
        if np.dot(face_down, down) < 0:
            face_down = -face_down
    else:
        face_down = down
    fpts = xy[face_idx[vis[face_idx]]]
    if len(fpts) >= 10:
        proj = fpts @ face_down
        face_h = float(proj.max() - proj.min())
    else:
        face_h = 0.45 * width
    face_h = max(face_h, 1.0)
    head_r = max(float(np.linalg.norm(face_c - neck)), 0.2 * width)
    return _Anchors(neck, down, pelvis, width, face_down, face_h, head_r)


# ---------------------------------------------------------------------- motion parts


def _speech_activity(feat: AudioFeatures, fps: float, sigma_s: float) -> np.ndarray:
    speaking = (np.asarray(feat.loudness) > 0.1).astype(np.float64)
    return _smoothstep(_gauss(speaking, sigma_s * fps) * 1.5)  # smoothstep: no kink at 1


def _mouth(xy: np.ndarray, ref: np.ndarray, feat: AudioFeatures, a: _Anchors, cfg: ProceduralConfig,
           fps: float) -> None:
    """Open / close the lower lip and jaw in place on xy (T, 133, 2)."""
    need = [i for pair in INNER_LIP_PAIRS for i in pair] + [p for p, _, _ in OUTER_LOWER]
    if not _visible(ref, need, cfg.min_score):
        return
    d = a.face_down
    loud = np.clip(feat.loudness.astype(np.float64), 0.0, 1.0) ** cfg.mouth_gamma
    gate = cfg.mouth_unvoiced_open + (1.0 - cfg.mouth_unvoiced_open) * np.clip(feat.voiced, 0.0, 1.0)
    opening = _gauss(loud * gate, cfg.mouth_smooth_s * fps) * cfg.mouth_max_open * a.face_height  # (T,)
    rest = cfg.mouth_rest_open * a.face_height
    deltas = []
    for (up, lo), prof in zip(INNER_LIP_PAIRS, INNER_LIP_PROFILE, strict=True):
        gap = float((ref[lo, :2] - ref[up, :2]) @ d)
        base = min(gap, rest) if cfg.close_reference_mouth else gap
        base = max(base, 0.0) if gap >= 0 else gap
        deltas.append(base - gap + prof * opening)
    deltas = np.stack(deltas, 1)  # (T, 3)
    for k, (_, lo) in enumerate(INNER_LIP_PAIRS):
        xy[:, lo] += deltas[:, k, None] * d
    for p, k, w in OUTER_LOWER:
        xy[:, p] += w * deltas[:, k, None] * d
    mid = deltas[:, 1]
    for p in MOUTH_CORNERS:
        xy[:, p] += cfg.corner_follow * mid[:, None] * d
    # Jaw contour: points below the mouth corners follow the chin, weighted by how low they are.
    corner_s = float(np.mean([ref[p, :2] @ d for p in MOUTH_CORNERS]))
    chin_s = float(ref[CHIN, :2] @ d)
    if chin_s - corner_s > 1e-6:
        jaw = np.array(L.FACE_JAW)
        w = np.clip((ref[jaw, :2] @ d - corner_s) / (chin_s - corner_s), 0.0, 1.0)
        xy[:, jaw] += cfg.jaw_follow * w[None, :, None] * mid[:, None, None] * d


def _blink_track(feat: AudioFeatures, fps: float, cfg: ProceduralConfig, rng: np.random.Generator) -> np.ndarray:
    """Eye closure 0..1 per frame from a seeded hazard process, boosted in pauses."""
    T = feat.num_frames
    pause = 1.0 - _speech_activity(feat, fps, 0.25)
    weight = 1.0 + cfg.blink_pause_boost * pause
    mean_gap = max(cfg.blink_interval_s - cfg.blink_min_interval_s, 0.2)
    hazard = weight / max(weight.mean(), 1e-9) / mean_gap / fps     # probability per frame
    u = rng.random(T)
    min_gap = int(round(cfg.blink_min_interval_s * fps))
    centres = []
    nxt = int(rng.integers(0, max(1, min_gap)))                     # no blink right at the start
    for k in range(T):
        if k >= nxt and u[k] < hazard[k]:
            centres.append(k)
            nxt = k + max(min_gap, 1)
    closure = np.zeros(T)
    if not centres:
        return closure
    t = np.arange(T) / fps
    dc, do = 0.4 * cfg.blink_duration_s, 0.6 * cfg.blink_duration_s
    for c in centres:
        dt = t - c / fps
        prof = np.where(dt < 0, 0.5 * (1 + np.cos(np.pi * np.clip(dt / dc, -1, 0))),
                        0.5 * (1 + np.cos(np.pi * np.clip(dt / do, 0, 1))))
        closure = np.maximum(closure, prof)
    return closure * cfg.blink_depth


def _blink(xy: np.ndarray, ref: np.ndarray, closure: np.ndarray, a: _Anchors, thr: float) -> None:
    d = a.face_down
    for eye, (c0, c1) in zip((RIGHT_EYE, LEFT_EYE), EYE_CORNERS, strict=True):
        if not _visible(ref, eye, thr):
            continue
        eye = np.array(eye)
        p = ref[eye, :2].astype(np.float64)
        line = (p[list(eye).index(c0)] + p[list(eye).index(c1)]) / 2
        s = (p - line) @ d                                  # offset from the corner line, + = lower
        lower = s[s > 0]
        meet = 0.6 * float(lower.mean()) if len(lower) else 0.0  # lids meet a bit below the centre
        xy[:, eye] += (closure[:, None] * (meet - s)[None, :])[..., None] * d


def _beats(feat: AudioFeatures, fps: float, cfg: ProceduralConfig) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and strengths of the onsets that get a stroke: strongest first, refractory."""
    frames = np.asarray(feat.onset_frames, dtype=np.int64)
    if len(frames) == 0:
        return np.zeros(0), np.zeros(0)
    strength = np.asarray(feat.onset, dtype=np.float64)[frames]
    loud = ndimage.maximum_filter1d(np.asarray(feat.loudness, np.float64), 3, mode="nearest")[frames]
    ok = (strength >= cfg.gesture_min_strength) & (loud > 0.1)
    frames, strength = frames[ok], strength[ok]
    order = np.argsort(-strength, kind="stable")
    taken: list[int] = []
    gap = max(cfg.gesture_refractory_s, cfg.gesture_rise_s + 0.05) * fps  # a stroke ends before the next
    for i in order:
        if all(abs(frames[i] - frames[j]) >= gap for j in taken):
            taken.append(int(i))
    taken.sort()
    return frames[taken] / fps, strength[taken]


def _arm_geometry(ref: np.ndarray, a: _Anchors, side: int, cfg: ProceduralConfig):
    sho, elb, wri, _ = ARMS[side]
    xy = ref[:, :2].astype(np.float64)
    S, E, W = xy[sho], xy[elb], xy[wri]
    u, f = E - S, W - E
    l1, l2 = float(np.linalg.norm(u)), float(np.linalg.norm(f))
    if l1 < 1e-3 or l2 < 1e-3:
        return None
    lateral = _unit(S - a.neck) if np.linalg.norm(S - a.neck) > 1e-3 else _unit(_perp(a.down))
    up = -a.down
    s1 = 1.0 if _perp(u) @ lateral >= 0 else -1.0         # rotation sign that abducts
    flex_dir = _perp(f) @ (up - lateral)
    s2 = (1.0 if flex_dir >= 0 else -1.0) if abs(flex_dir) > 1e-9 else -s1
    th_d = math.atan2(a.down[1], a.down[0])
    th1, th2 = math.atan2(u[1], u[0]), math.atan2(f[1], f[0])
    abd_ref = s1 * float(_wrap(th1 - th_d))
    flex_ref = s2 * float(_wrap(th2 - th1))
    arm = l1 + l2
    reach = max(float(np.linalg.norm(W - S)), 1e-3)
    A = cfg.gesture_amplitude * arm
    flex_max = 2 * math.asin(min(0.95, (1 - cfg.gesture_abduction_share) * A / (2 * l2)))
    abd_max = 2 * math.asin(min(0.95, cfg.gesture_abduction_share * A / (2 * reach)))
    lo_f, hi_f = np.radians(cfg.elbow_flex_range_deg)
    lo_a, hi_a = np.radians(cfg.shoulder_abduction_range_deg)
    flex_lim = (min(lo_f, flex_ref), max(hi_f, flex_ref))
    abd_lim = (min(lo_a, abd_ref), max(hi_a, abd_ref))
    # A stroke flexes the elbow (raises the hand) and abducts the upper arm, unless the photo's arm
    # is already near that end of its range: then it goes the other way (extends, adducts).
    return dict(S=S, W=W, l1=l1, l2=l2, s1=s1, s2=s2, th_d=th_d, th2=th2, abd_ref=abd_ref,
                flex_ref=flex_ref, flex_max=flex_max * _stroke_sign(flex_ref, flex_lim, flex_max),
                abd_max=abd_max * _stroke_sign(abd_ref, abd_lim, abd_max),
                flex_lim=flex_lim, abd_lim=abd_lim)


def _stroke_sign(ref: float, lim: tuple[float, float], amount: float) -> float:
    up, down = lim[1] - ref, ref - lim[0]
    return 1.0 if up >= amount or up >= down else -1.0


def _soft_offset(delta: np.ndarray, ref: float, lim: tuple[float, float], knee: float = 0.7) -> np.ndarray:
    """Angle offset that follows ``delta`` but approaches the joint limits smoothly (C1)."""
    out = np.asarray(delta, dtype=np.float64).copy()
    for sign, room in ((1.0, lim[1] - ref), (-1.0, ref - lim[0])):
        d = sign * out
        sel = d > knee * room
        if room <= 1e-9:
            out[d > 0] = 0.0
            continue
        k, top = knee * room, (1.0 - knee) * room
        out[sel] = sign * (k + top * np.tanh((d[sel] - k) / top))
    return out


def _hand_local(ref: np.ndarray, hand: tuple, curl: np.ndarray, cfg: ProceduralConfig) -> np.ndarray:
    """Hand points (T, 21, 2) in reference coordinates with fingers curled (>0) or opened (<0)."""
    h = ref[list(hand), :2].astype(np.float64)
    T = len(curl)
    out = np.broadcast_to(h, (T, 21, 2)).copy()
    wrist = h[0]
    mid_dir = h[9] - wrist                                   # middle-finger MCP
    closing = np.clip(curl, 0.0, 1.0)
    opening = np.clip(-curl, 0.0, 1.0)
    spread = math.radians(cfg.finger_spread_deg)
    for k in range(5):
        idx = np.arange(1 + 4 * k, 5 + 4 * k)
        base = h[idx[0]]
        scale = 1.0 - cfg.finger_curl * closing                # (T,)
        out[:, idx[1:]] = base + (h[idx[1:]] - base)[None] * scale[:, None, None]
        v = base - wrist
        side = float(np.sign(mid_dir[0] * v[1] - mid_dir[1] * v[0]))
        if k == 2 or side == 0:
            continue
        ang = side * spread * abs(k - 2) / 2 * opening       # (T,)
        out[:, idx] = wrist + _rot(out[:, idx] - wrist, ang[:, None])
    return out


def _arm_points(geo: dict, side: int, flex: np.ndarray, abd: np.ndarray,
                hand_local: np.ndarray | None) -> dict[int, np.ndarray]:
    """Forward kinematics: elbow, wrist and hand (reference frame) for angle offsets (T,)."""
    sho, elb, wri, hand = ARMS[side]
    ab = geo["abd_ref"] + _soft_offset(abd, geo["abd_ref"], geo["abd_lim"])
    fl = geo["flex_ref"] + _soft_offset(flex, geo["flex_ref"], geo["flex_lim"])
    th1 = geo["th_d"] + geo["s1"] * ab
    th2 = th1 + geo["s2"] * fl
    E = geo["S"] + geo["l1"] * np.stack([np.cos(th1), np.sin(th1)], -1)
    W = E + geo["l2"] * np.stack([np.cos(th2), np.sin(th2)], -1)
    out = {elb: E, wri: W}
    if hand_local is not None:
        rot = th2 - geo["th2"]
        out[hand] = W[:, None] + _rot(hand_local - geo["W"], rot[:, None])
    return out


def _body_transform(pts: np.ndarray, rot: np.ndarray, shift: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """Rigid per-frame transform of (T, N, 2) points: rotate about pivot, then shift."""
    return _rot(pts - pivot, rot[:, None]) + pivot + shift[:, None]


# ---------------------------------------------------------------------- public API


def procedural_motion(reference: np.ndarray, canvas: tuple[int, int], features: AudioFeatures, *,
                      seed: int = 0, config: ProceduralConfig | None = None) -> np.ndarray:
    """Animate the reference pose (133, 3) from audio features: (T, 133, 3) keypoints, float32.

    ``canvas`` is (height, width) in pixels. Scores are those of the reference in every frame;
    points below ``config.min_score`` are moved along but never used as anchors.
    """
    cfg = config or ProceduralConfig()
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim == 3 and ref.shape[0] == 1:
        ref = ref[0]
    if ref.shape != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"reference: expected keypoints of shape ({L.NUM_KEYPOINTS}, 3), got {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError("reference: expected finite keypoints, got NaN or inf")
    try:
        H, W = (int(v) for v in canvas)
    except (TypeError, ValueError):
        raise ValueError(f"canvas: expected (height, width) in pixels, got {canvas!r}") from None
    if H <= 0 or W <= 0:
        raise ValueError(f"canvas: expected positive (height, width), got {canvas!r}")
    fps = float(features.fps)
    T = features.num_frames
    if T == 0:
        return np.zeros((0, L.NUM_KEYPOINTS, 3), dtype=np.float32)

    a = _anchors(ref, cfg.min_score)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(6)]
    rng_blink, rng_head, rng_beat, rng_body, rng_hand, _ = streams
    t = np.arange(T) / fps
    xy = np.broadcast_to(ref[:, :2], (T, L.NUM_KEYPOINTS, 2)).copy()

    # ---- face (local deformation in the photo's head frame)
    _mouth(xy, ref, features, a, cfg, fps)
    _blink(xy, ref, _blink_track(features, fps, cfg, rng_blink), a, cfg.min_score)

    # ---- gesture beats
    beat_t, beat_s = _beats(features, fps, cfg)
    nb = len(beat_t)
    beat_amp = np.clip(0.35 + 0.55 * beat_s, 0.0, 1.0) * rng_beat.uniform(0.85, 1.1, nb)
    pr = np.asarray(cfg.gesture_arm_probs, dtype=np.float64)
    choice = rng_beat.choice(3, size=nb, p=pr / pr.sum()) if nb else np.zeros(0, np.int64)
    abd_mix = rng_beat.uniform(0.3, 1.0, nb)
    stroke_args = (cfg.gesture_lead_s, cfg.gesture_rise_s, cfg.gesture_hold_s, cfg.gesture_decay_s)
    hold = cfg.gesture_speech_hold * _speech_activity(features, fps, cfg.gesture_speech_smooth_s)
    levels = []
    for own in (1, 0):                                  # LEFT uses choice 1, RIGHT choice 0
        use = (choice == own) | (choice == 2)
        fl = _beat_track(t, beat_t[use], beat_amp[use], *stroke_args)
        ab = _beat_track(t, beat_t[use], beat_amp[use] * abd_mix[use], *stroke_args)
        # Strokes ride on the speech hold and share the range left above it: level <= 1.
        top = 1.0 - cfg.gesture_speech_hold
        levels.append((hold + top * np.clip(fl, 0, 1), 0.5 * hold + top * np.clip(ab, 0, 1)))

    # ---- head: rigid rotation + nod shift about the neck
    pz = _gauss(np.asarray(features.pitch_z, np.float64) * np.clip(features.voiced, 0, 1),
                cfg.head_smooth_s * fps)
    accent = _stroke(t, beat_t, beat_amp, 0.02, 0.12, 0.05, 0.3)
    nod_deg = -cfg.head_pitch_nod_deg * pz + cfg.head_onset_nod_deg * accent \
        + 0.5 * cfg.head_pitch_nod_deg * _drift(rng_head, t, cfg.head_drift_hz)
    roll = np.radians(cfg.head_roll_deg * _drift(rng_head, t, cfg.head_drift_hz))
    turn = np.radians(cfg.head_turn_deg * _drift(rng_head, t, cfg.head_drift_hz))
    lateral = _perp(a.down)
    head_shift = (a.head_radius * np.sin(np.radians(nod_deg)))[:, None] * a.down \
        + (0.5 * a.head_radius * np.sin(turn))[:, None] * lateral
    head = np.array(HEAD)
    xy[:, head] = _rot(xy[:, head] - a.neck, roll[:, None]) + a.neck + head_shift[:, None]

    # ---- body: breathing (everything above the hips rises with the shoulders) and sway
    breath_hz = 1.0 / cfg.breath_period_s * rng_body.uniform(0.85, 1.15)
    breath = cfg.breath_amplitude * a.shoulder_width * 0.5 * (
        1 - np.cos(2 * np.pi * breath_hz * t + rng_body.uniform(0, 2 * np.pi)))
    upper = np.ones(L.NUM_KEYPOINTS, dtype=bool)
    upper[[L.L_HIP, L.R_HIP]] = False
    upper[list(range(L.L_HIP + 2, L.FACE[0]))] = False              # knees, ankles, feet
    lift = -breath[:, None] * a.down                                # (T, 2)
    xy[:, upper] += lift[:, None]
    sway_rot = np.radians(cfg.sway_deg * _drift(rng_body, t, cfg.sway_hz))
    sway_shift = cfg.sway_shift * a.shoulder_width * np.stack(
        [_drift(rng_body, t, cfg.sway_hz), 0.5 * _drift(rng_body, t, cfg.sway_hz)], -1)
    xy = _body_transform(xy, sway_rot, sway_shift, a.pelvis)

    # ---- arms (computed in the photo's frame, then lifted and swayed like the torso)
    fidget = cfg.hand_fidget * _drift(rng_hand, t, (0.1, 0.4))
    margin = cfg.canvas_margin
    lo = np.array([margin, margin])
    hi = np.array([W - 1 - margin, H - 1 - margin])
    win = max(1, int(round(0.25 * fps)))
    for side in (LEFT, RIGHT):
        sho, elb, wri, hand = ARMS[side]
        if not _visible(ref, (sho, elb, wri), cfg.min_score):
            continue  # this arm is not seen well enough to be animated: it follows the torso only
        geo = _arm_geometry(ref, a, side, cfg)
        if geo is None:
            continue
        g_fl, g_ab = levels[side]
        curl = np.clip(-cfg.hand_open * g_fl + fidget, -1.0, 1.0)
        hand_vis = ref[list(hand), 2] >= cfg.min_score
        hand_local = _hand_local(ref, hand, curl, cfg)
        check = np.concatenate([[ref[elb, 2] >= cfg.min_score, ref[wri, 2] >= cfg.min_score], hand_vis])

        def place(scale: np.ndarray, geo=geo, side=side, g_fl=g_fl, g_ab=g_ab,
                  hand_local=hand_local) -> np.ndarray:
            """Elbow, wrist and hand (T, 23, 2) on the canvas for a per-frame stroke scale."""
            pts = _arm_points(geo, side, scale * g_fl * geo["flex_max"], scale * g_ab * geo["abd_max"],
                              hand_local)
            e, w, h = ARMS[side][1:]
            stack = np.concatenate([pts[e][:, None], pts[w][:, None], pts[h]], 1) + lift[:, None]
            return _body_transform(stack, sway_rot, sway_shift, a.pelvis)

        # Largest stroke scale per frame that keeps the visible points on the canvas, made smooth:
        # a running minimum then a box average of the same half-width never exceeds the limit.
        cands = np.array([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
        allowed = np.zeros(T)
        for c in cands[::-1]:
            p = place(np.full(T, c))[:, check]
            inside = ((p >= lo) & (p <= hi)).all(axis=(1, 2))
            allowed = np.where(inside, c, allowed)
        if (allowed < 1.0).any():
            allowed = ndimage.minimum_filter1d(allowed, 2 * win + 1, mode="nearest")
            allowed = ndimage.uniform_filter1d(allowed, 2 * win + 1, mode="nearest")
        final = place(allowed)
        xy[:, elb], xy[:, wri], xy[:, list(hand)] = final[:, 0], final[:, 1], final[:, 2:]

    # ---- output: scores as in the photo; present points held on the canvas
    out = np.empty((T, L.NUM_KEYPOINTS, 3), dtype=np.float64)
    out[..., :2] = xy
    out[..., 2] = ref[:, 2]
    present = ref[:, 2] > 0
    out[:, present, 0] = np.clip(out[:, present, 0], 0.0, W - 1)
    out[:, present, 1] = np.clip(out[:, present, 1], 0.0, H - 1)
    out[:, ~present] = 0.0
    return out.astype(np.float32)


def procedural_poses(mono: np.ndarray, sample_rate: int, reference_kp: np.ndarray, height: int, width: int,
                     fps: float = 25.0, seed: int = 0, config: ProceduralConfig | None = None,
                     num_frames: int | None = None) -> PoseSequence:
    """Audio waveform + reference keypoints -> procedural PoseSequence at ``fps``."""
    feats = audio_features(mono, sample_rate, fps, num_frames)
    kp = procedural_motion(reference_kp, (height, width), feats, seed=seed, config=config)
    return PoseSequence(keypoints=kp, height=height, width=width, fps=fps)
