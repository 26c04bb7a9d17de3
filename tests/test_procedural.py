"""Procedural audio-driven motion: audio features and the animated reference pose."""

import time

import numpy as np
import pytest

from iasa_core.motion.features import AudioFeatures, audio_features
from iasa_core.motion.procedural import ProceduralConfig, procedural_motion, procedural_poses
from iasa_core.pose import layout as L
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints

SR = 16000
FPS = 25.0
H = W = 512
LEAD, SPEECH, TAIL = 2.0, 2.0, 1.5          # seconds of silence, speech-like signal, silence
BURSTS = (2.5, 3.1, 3.7)                     # sharp bursts inside the speech (s)
UPPER_LIP, LOWER_LIP = 85, 89               # inner lip middle points (iBUG 62 / 66)
EYE_A, EYE_B = 60, 64                        # upper / lower lid of one eye (iBUG 37 / 41)
ARM_BONES = ((L.L_SHOULDER, L.L_ELBOW), (L.L_ELBOW, L.L_WRIST),
             (L.R_SHOULDER, L.R_ELBOW), (L.R_ELBOW, L.R_WRIST))


def speech_like(seed: int = 0) -> np.ndarray:
    """Silence, a harmonic 120-220 Hz tone with 4 Hz syllable modulation and bursts, silence."""
    rng = np.random.default_rng(seed)
    n = int((LEAD + SPEECH + TAIL) * SR)
    x = np.zeros(n)
    s0, s1 = int(LEAD * SR), int((LEAD + SPEECH) * SR)
    ts = np.arange(s1 - s0) / SR
    f0 = 170 + 50 * np.sin(2 * np.pi * 0.7 * ts)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    x[s0:s1] = 0.3 * tone * (0.5 - 0.5 * np.cos(2 * np.pi * 4 * ts))
    m = int(0.03 * SR)
    for b in BURSTS:
        i = int(b * SR)
        x[i:i + m] += 0.8 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.01 * SR))
    x += 1e-4 * rng.standard_normal(n)       # a quiet noise floor, as in any recording
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def reference():
    return synthetic_keypoints(1, H, W)[0]


@pytest.fixture(scope="module")
def audio():
    return speech_like()


@pytest.fixture(scope="module")
def poses(audio, reference):
    return procedural_poses(audio, SR, reference, H, W, fps=FPS, seed=0).keypoints


def _frames_between(t0, t1, fps=FPS):
    return slice(int(round(t0 * fps)), int(round(t1 * fps)))


SILENT = (_frames_between(0.2, LEAD - 0.3), _frames_between(LEAD + SPEECH + 0.5, LEAD + SPEECH + TAIL))
SPEAKING = _frames_between(LEAD + 0.1, LEAD + SPEECH - 0.1)


def _speed(kp, idx):
    return np.linalg.norm(np.diff(kp[:, idx, :2], axis=0), axis=-1) * FPS


# ---------------------------------------------------------------------- features


def test_features_pitch_of_a_200hz_tone():
    t = np.arange(SR) / SR
    f = audio_features(0.5 * np.sin(2 * np.pi * 200 * t), SR, FPS)
    voiced = f.pitch > 0
    assert voiced.mean() > 0.8
    assert abs(np.median(f.pitch[voiced]) - 200.0) / 200.0 < 0.03
    assert np.all((f.voiced >= 0) & (f.voiced <= 1))


def test_features_onsets_loudness_and_frame_count(audio):
    f = audio_features(audio, SR, FPS)
    assert isinstance(f, AudioFeatures)
    assert f.num_frames == round(len(audio) / SR * FPS)
    for name in ("loudness", "voiced", "onset", "pitch", "pitch_z"):
        assert getattr(f, name).shape == (f.num_frames,), name
    for b in BURSTS:
        assert np.min(np.abs(f.onset_frames - b * FPS)) <= 2, (b, f.onset_frames)
    assert np.all(f.onset[f.onset_frames] > 0)
    for sl in SILENT:
        assert f.loudness[sl].max() < 0.05 and f.voiced[sl].max() == 0 and f.pitch[sl].max() == 0
    assert f.loudness[SPEAKING].mean() > 0.5
    assert f.voiced[SPEAKING].mean() > 0.6
    pitch = f.pitch[SPEAKING][f.pitch[SPEAKING] > 0]
    assert 110 < pitch.min() and pitch.max() < 235        # the 120-220 Hz glide
    assert np.abs(f.pitch_z).max() <= 3.0


def test_features_resampling_channels_and_num_frames(audio):
    x44 = np.interp(np.arange(int(len(audio) * 44100 / SR)) / 44100, np.arange(len(audio)) / SR, audio)
    stereo = np.stack([x44, x44]).astype(np.float32)
    f = audio_features(stereo, 44100, 30.0, num_frames=100)
    assert f.num_frames == 100 and f.fps == 30.0
    assert f.loudness[:40].max() < 0.05 and f.loudness[70:100].mean() > 0.4   # speech from 2 s
    with pytest.raises(ValueError, match="non-empty"):
        audio_features(np.zeros(0), SR, FPS)
    with pytest.raises(ValueError, match="fps"):
        audio_features(audio, SR, 0)


def test_features_of_silence_are_zero():
    f = audio_features(np.zeros(SR), SR, FPS)
    assert f.loudness.max() == 0 and f.onset.max() == 0 and len(f.onset_frames) == 0
    assert f.pitch.max() == 0


# ---------------------------------------------------------------------- motion


def test_output_shape_scores_canvas_and_smoothness(poses, reference, audio):
    assert poses.shape == (round(len(audio) / SR * FPS), 133, 3) and poses.dtype == np.float32
    assert np.all(poses[..., 2] == reference[None, :, 2])
    present = reference[:, 2] > 0
    xy = poses[:, present, :2]
    assert np.all(xy >= 0) and np.all(xy[..., 0] <= W - 1) and np.all(xy[..., 1] <= H - 1)
    step = np.linalg.norm(np.diff(poses[:, present, :2], axis=0), axis=-1)
    assert step.max() < 0.04 * H                           # no jumps between frames
    assert np.isfinite(poses).all()


def test_mouth_opens_with_speech_and_closes_in_silence(poses, reference):
    gap = np.linalg.norm(poses[:, LOWER_LIP, :2] - poses[:, UPPER_LIP, :2], axis=-1)
    ref_gap = np.linalg.norm(reference[LOWER_LIP, :2] - reference[UPPER_LIP, :2])
    silent = np.concatenate([gap[sl] for sl in SILENT])
    speaking = gap[SPEAKING]
    face_h = np.ptp(reference[list(L.FACE), 1])
    print(f"\nmouth gap: silence {silent.mean():.2f} px, speech {speaking.mean():.2f} px "
          f"(reference {ref_gap:.2f} px, face height {face_h:.1f} px)")
    assert silent.max() <= ref_gap + 0.5                 # closed (the photo's mouth is half open)
    assert speaking.mean() > 3 * silent.mean() + 0.04 * face_h
    assert speaking.max() < 0.25 * face_h                # plausible range
    # The jaw (chin) drops with the mouth.
    chin = L.FACE[8]
    chin_rel = (poses[:, chin, 1] - poses[:, L.NOSE, 1])
    assert chin_rel[SPEAKING].mean() > np.concatenate([chin_rel[sl] for sl in SILENT]).mean() + 1.0


def test_gestures_follow_onsets(poses):
    speed = np.maximum(_speed(poses, L.L_WRIST), _speed(poses, L.R_WRIST))
    t_speed = (np.arange(len(speed)) + 0.5) / FPS          # speed i lies between frames i and i+1
    for b in BURSTS:
        win = (t_speed >= b - 0.25) & (t_speed <= b + 0.55)
        peak_t = t_speed[win][np.argmax(speed[win])]
        assert b - 0.06 <= peak_t <= b + 0.3, (b, peak_t)
        assert speed[win].max() > 5 * np.median(speed)
    silent = np.concatenate([speed[sl][:-1] for sl in SILENT])
    energy_speech, energy_silence = np.mean(speed[SPEAKING] ** 2), np.mean(silent ** 2)
    print(f"\nwrist motion energy: speech {energy_speech:.1f}, silence {energy_silence:.1f} (px/s)^2")
    assert energy_speech > 20 * energy_silence


def test_bone_lengths_kept_exactly(poses, reference):
    for a, b in ARM_BONES:
        ref_len = np.linalg.norm(reference[a, :2] - reference[b, :2])
        lens = np.linalg.norm(poses[:, a, :2] - poses[:, b, :2], axis=-1)
        np.testing.assert_allclose(lens, ref_len, rtol=1e-3)
    # the arms did move, so this is not trivially true
    assert np.ptp(poses[:, L.L_WRIST, 1]) + np.ptp(poses[:, L.R_WRIST, 1]) > 10


def test_deterministic_per_seed(audio, reference):
    f = audio_features(audio, SR, FPS)
    a = procedural_motion(reference, (H, W), f, seed=7)
    b = procedural_motion(reference, (H, W), f, seed=7)
    c = procedural_motion(reference, (H, W), f, seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1.0


def _blink_events(kp):
    eye = np.linalg.norm(kp[:, EYE_A, :2] - kp[:, EYE_B, :2], axis=-1)
    closed = eye < 0.5 * np.median(eye)
    starts = np.flatnonzero(np.diff(closed.astype(int)) == 1)
    ends = np.flatnonzero(np.diff(closed.astype(int)) == -1)
    return closed, starts, ends


def test_performance_60s_and_blink_rate(audio, reference):
    x = np.tile(audio, int(np.ceil(60 * SR / len(audio))))[:60 * SR]
    procedural_poses(x[:SR], SR, reference, H, W)           # warm-up (FFT plans, imports)
    t0 = time.perf_counter()
    seq = procedural_poses(x, SR, reference, H, W, fps=FPS, seed=1)
    elapsed = time.perf_counter() - t0
    print(f"\nprocedural motion for 60 s of audio at {FPS:g} fps: {elapsed:.3f} s (features included)")
    assert isinstance(seq, PoseSequence) and len(seq) == 1500 and seq.fps == FPS
    assert elapsed < 2.0
    closed, starts, ends = _blink_events(seq.keypoints)
    print(f"blinks in 60 s: {len(starts)}")
    assert 6 <= len(starts) <= 30                         # every 2-10 s
    assert closed.mean() < 0.1                            # blinks are short
    for a, b in ARM_BONES:
        lens = np.linalg.norm(seq.keypoints[:, a, :2] - seq.keypoints[:, b, :2], axis=-1)
        np.testing.assert_allclose(lens, np.linalg.norm(reference[a, :2] - reference[b, :2]), rtol=1e-3)


def test_silent_audio_gives_idle_motion_only(reference):
    kp = procedural_poses(np.zeros(3 * SR, np.float32), SR, reference, H, W).keypoints
    gap = np.linalg.norm(kp[:, LOWER_LIP, :2] - kp[:, UPPER_LIP, :2], axis=-1)
    assert gap.max() < 0.5
    assert np.maximum(_speed(kp, L.L_WRIST), _speed(kp, L.R_WRIST)).max() < 20   # px/s: sway only
    assert np.ptp(kp[:, L.NOSE, :2], axis=0).max() > 0.2                          # but not frozen


def test_invisible_hands_stay_invisible(audio, reference):
    ref = reference.copy()
    ref[list(L.LEFT_HAND), 2] = 0.0
    ref[list(L.RIGHT_HAND), 2] = 0.1                       # detected but unreliable
    ref[list(L.LEFT_HAND), :2] = 0.0
    kp = procedural_poses(audio, SR, ref, H, W).keypoints
    assert np.isfinite(kp).all()
    assert np.all(kp[:, list(L.LEFT_HAND)] == 0)
    assert np.all(kp[:, list(L.RIGHT_HAND), 2] == np.float32(0.1))
    assert np.ptp(kp[:, L.L_WRIST, 1]) + np.ptp(kp[:, L.R_WRIST, 1]) > 10   # arms still gesture


def test_missing_arm_and_one_shoulder_do_not_break(audio, reference):
    ref = reference.copy()
    ref[[L.R_SHOULDER, L.R_ELBOW, L.R_WRIST], 2] = 0.0
    kp = procedural_poses(audio, SR, ref, H, W).keypoints
    assert np.isfinite(kp).all()
    assert np.all(kp[:, [L.R_SHOULDER, L.R_ELBOW, L.R_WRIST]] == 0)
    lens = np.linalg.norm(kp[:, L.L_SHOULDER, :2] - kp[:, L.L_ELBOW, :2], axis=-1)
    np.testing.assert_allclose(lens, np.linalg.norm(ref[L.L_SHOULDER, :2] - ref[L.L_ELBOW, :2]), rtol=1e-3)


def _hanging_arms(reference):
    """The synthetic reference with both arms hanging slightly outward (hands moved along)."""
    ref = reference.copy()
    for sho, elb, wri, hand, out in ((L.L_SHOULDER, L.L_ELBOW, L.L_WRIST, L.LEFT_HAND, 1.0),
                                     (L.R_SHOULDER, L.R_ELBOW, L.R_WRIST, L.RIGHT_HAND, -1.0)):
        l1 = np.linalg.norm(ref[elb, :2] - ref[sho, :2])
        l2 = np.linalg.norm(ref[wri, :2] - ref[elb, :2])
        e = ref[sho, :2] + l1 * np.array([out * np.sin(0.3), np.cos(0.3)])
        w = e + l2 * np.array([out * np.sin(0.1), np.cos(0.1)])
        ref[list(hand), :2] += w - ref[wri, :2]
        ref[elb, :2], ref[wri, :2] = e, w
    return ref


def test_strokes_are_limited_by_the_canvas(audio, reference):
    # A canvas cropped tightly around the person: strokes shrink (smoothly) instead of leaving it.
    ref = _hanging_arms(reference)
    ref[[L.L_HIP, L.R_HIP], 2] = 0.0
    present = ref[:, 2] > 0
    ref[present, :2] -= ref[present, :2].min(0) - 4
    w, h = (int(np.ceil(v)) for v in ref[present, :2].max(0) + 5)
    cfg = ProceduralConfig(gesture_amplitude=0.8, sway_deg=0.0, sway_shift=0.0, breath_amplitude=0.0)
    free = procedural_poses(audio, SR, ref, 4 * h, 4 * w, config=cfg).keypoints[:, present, :2]
    assert (free[..., 0] > w - 1).any() or (free[..., 1] > h - 1).any() or (free < 0).any()
    kp = procedural_poses(audio, SR, ref, h, w, config=cfg).keypoints
    p = kp[:, present, :2]
    assert np.all(p >= 0) and np.all(p[..., 0] <= w - 1) and np.all(p[..., 1] <= h - 1)
    for a, b in ARM_BONES:
        lens = np.linalg.norm(kp[:, a, :2] - kp[:, b, :2], axis=-1)
        np.testing.assert_allclose(lens, np.linalg.norm(ref[a, :2] - ref[b, :2]), rtol=1e-3)
    assert np.ptp(kp[:, L.L_WRIST, 1]) + np.ptp(kp[:, L.R_WRIST, 1]) > 5
    step = np.linalg.norm(np.diff(kp[:, list(L.LEFT_HAND) + list(L.RIGHT_HAND), :2], axis=0), axis=-1)
    assert step.max() < 0.04 * max(h, w)


@pytest.mark.parametrize("missing", ["face", "shoulders"])
def test_reference_without_face_or_shoulders_raises(audio, reference, missing):
    ref = reference.copy()
    if missing == "face":
        ref[list(L.FACE) + [L.NOSE, L.L_EYE, L.R_EYE, L.L_EAR, L.R_EAR], 2] = 0.0
    else:
        ref[[L.L_SHOULDER, L.R_SHOULDER], 2] = 0.0
    f = audio_features(audio, SR, FPS)
    with pytest.raises(ValueError, match="visible face and shoulders"):
        procedural_motion(ref, (H, W), f)


def test_bad_reference_shape_raises(audio):
    f = audio_features(audio, SR, FPS)
    with pytest.raises(ValueError, match=r"\(133, 3\)"):
        procedural_motion(np.zeros((17, 3)), (H, W), f)
