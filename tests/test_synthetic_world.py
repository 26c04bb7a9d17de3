"""The synthetic talking-character world: renderer, poses, motion, speech and the world on disk."""

import dataclasses

import numpy as np
import pytest

from iasa_core.audio import rms_db
from iasa_core.media import read_video, read_video_audio
from iasa_core.pose import layout as L
from iasa_core.pose.sequence import PoseSequence
from iasa_core.synthetic import (
    CharacterStyle,
    character_motion,
    espeak_available,
    ground_truth,
    load_world,
    make_world,
    reference_pose,
    render_character,
    render_video,
    sample_ground_truth,
    speech_clip,
)
from iasa_core.synthetic.__main__ import main as cli_main

F = L.FACE[0]
H = W = 128


def _character(seed: int = 0):
    rng = np.random.default_rng(seed)
    return CharacterStyle.random(rng), reference_pose(rng, H, W)


def test_render_is_deterministic_and_styles_differ():
    style, kp = _character(0)
    a = render_character(kp, style, H, W)
    assert a.shape == (H, W, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render_character(kp.copy(), style, H, W))
    other = CharacterStyle.random(np.random.default_rng(1))
    b = render_character(kp, other, H, W)
    assert (np.abs(a.astype(int) - b).sum(-1) > 0).mean() > 0.3  # background, clothes, skin all change
    # Every frame of a video is the single-frame render.
    kps = np.stack([kp, kp + [3, 0, 0]])
    video = render_video(kps, style, H, W)
    np.testing.assert_array_equal(video[1], render_character(kps[1], style, H, W))
    assert not np.array_equal(video[0], video[1])


def test_style_round_trips_and_is_checked():
    style = CharacterStyle.random(np.random.default_rng(5))
    assert CharacterStyle.from_dict(style.to_dict()) == style
    with pytest.raises(ValueError, match="hair_style"):
        dataclasses.replace(style, hair_style="mohawk")
    with pytest.raises(ValueError, match="unknown keys"):
        CharacterStyle.from_dict({**style.to_dict(), "hat": True})


def test_opening_the_mouth_changes_only_the_mouth():
    style, kp = _character(2)
    style = dataclasses.replace(style, teeth=True)
    closed = kp.copy()
    upper_inner, lower_inner = [F + 61, F + 62, F + 63], [F + 67, F + 66, F + 65]
    closed[lower_inner, :2] = closed[upper_inner, :2]
    face_w = float(np.linalg.norm(kp[F + 16, :2] - kp[F, :2]))
    opened = closed.copy()
    drop = np.array([0.0, 0.15 * face_w])
    opened[lower_inner, :2] += drop
    opened[[F + 56, F + 57, F + 58], :2] += drop          # the outer lower lip goes along
    opened[[F + 55, F + 59], :2] += drop / 2
    a, b = render_character(closed, style, H, W), render_character(opened, style, H, W)
    changed = np.abs(a.astype(int) - b).sum(-1) > 0
    assert changed.sum() >= 10
    lips = np.concatenate([closed[F + 48:F + 68, :2], opened[F + 48:F + 68, :2]])
    (x0, y0), (x1, y1) = lips.min(0) - 2, lips.max(0) + 2
    ys, xs = np.nonzero(changed)
    assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1


def test_closed_eyelids_hide_the_eye():
    rng = np.random.default_rng(3)
    # Dark skin and lashes around a white sclera: light pixels near the eyes are sclera only.
    style = dataclasses.replace(CharacterStyle.random(rng), eye_style="iris", eye_size=1.3,
                                skin=(90, 60, 40), skin_shade=(80, 50, 35))
    kp = reference_pose(rng, 256, 256)
    shut = kp.copy()
    for eye in (range(F + 36, F + 42), range(F + 42, F + 48)):
        idx = list(eye)
        shut[idx, 1] = (kp[idx[0], 1] + kp[idx[3], 1]) / 2    # both lids on the corner line
    eyes = kp[F + 36:F + 48, :2]
    (x0, y0), (x1, y1) = np.floor(eyes.min(0) - 3).astype(int), np.ceil(eyes.max(0) + 3).astype(int)

    def white(img):
        return int((img[y0:y1, x0:x1] >= 150).all(-1).sum())

    assert white(render_character(kp, style, 256, 256)) >= 6
    assert white(render_character(shut, style, 256, 256)) == 0


def _skin_centroid(img: np.ndarray, style: CharacterStyle) -> np.ndarray:
    ys, xs = np.nonzero((img == style.skin).all(-1))
    assert len(xs) > 10
    return np.array([xs.mean(), ys.mean()])


def test_moving_the_wrist_moves_the_hand():
    style, kp = _character(4)
    style = dataclasses.replace(style, long_sleeves=True)  # only the hand is skin-coloured then
    kp = kp.copy()
    kp[list(L.FACE) + list(L.LEFT_HAND) + [L.NOSE, L.L_EYE, L.R_EYE, L.L_EAR, L.R_EAR], 2] = 0.0
    hand = [L.R_WRIST] + list(L.RIGHT_HAND)
    base = _skin_centroid(render_character(kp, style, H, W), style)
    for d in ((6.0, -4.0), (-3.0, -7.0)):
        moved = kp.copy()
        moved[hand, :2] += d
        shift = _skin_centroid(render_character(moved, style, H, W), style) - base
        np.testing.assert_allclose(shift, d, atol=1.0)


def test_points_with_low_scores_are_not_drawn():
    style, kp = _character(6)
    without = kp.copy()
    without[list(L.LEFT_HAND), 2] = 0.0
    ref = render_character(without, style, H, W)
    low = kp.copy()
    low[list(L.LEFT_HAND), 2] = 0.29
    low[list(L.LEFT_HAND), :2] += (5.0, 9.0)               # where they are does not matter
    np.testing.assert_array_equal(render_character(low, style, H, W), ref)
    assert not np.array_equal(render_character(kp, style, H, W), ref)
    nothing = kp.copy()
    nothing[:, 2] = 0.2
    blank = render_character(nothing, style, H, W)
    empty = dataclasses.replace(style, background_bottom=style.background)
    flat = render_character(nothing, empty, H, W)
    assert (flat == style.background).all()                # only the background is left
    assert blank.shape == flat.shape


def test_reference_pose_is_on_canvas_and_plausible():
    for seed in range(5):
        kp = reference_pose(np.random.default_rng(seed), 96, 160)
        needed = list(range(0, 11)) + list(L.FACE) + list(L.LEFT_HAND) + list(L.RIGHT_HAND)
        assert (kp[needed, 2] == 1.0).all()
        seen = kp[:, 2] > 0
        assert ((kp[seen, 0] >= 0) & (kp[seen, 0] < 160) & (kp[seen, 1] >= 0) & (kp[seen, 1] < 96)).all()
        assert kp[L.L_SHOULDER, 0] > kp[L.R_SHOULDER, 0]           # subject's left on image right
        assert kp[F + 8, 1] < kp[L.L_SHOULDER, 1]                  # chin above the shoulders
    np.testing.assert_array_equal(reference_pose(np.random.default_rng(1), H, W),
                                  reference_pose(np.random.default_rng(1), H, W))


@pytest.mark.parametrize("kind", ["speech", "gesture"])
def test_character_motion(kind):
    rng = np.random.default_rng(7)
    ref = reference_pose(rng, H, W)
    clip = speech_clip(rng, 2.0, engine="synthetic")
    seq = character_motion(clip, ref, 25.0, np.random.default_rng(8), kind, height=H, width=W)
    assert len(seq) == 50 and (seq.height, seq.width) == (H, W)
    kp = seq.keypoints
    assert np.isfinite(kp).all() and (kp[..., 0] <= W - 1).all() and (kp[..., 1] <= H - 1).all()
    gap = kp[:, F + 66, 1] - kp[:, F + 62, 1]
    assert gap.max() - gap.min() > 1.0                              # the mouth moves with the speech
    forearm = np.linalg.norm(kp[:, L.L_WRIST, :2] - kp[:, L.L_ELBOW, :2], axis=-1)
    np.testing.assert_allclose(forearm, forearm[0], rtol=1e-3)      # bone lengths are kept
    if kind == "gesture":
        for wrist in (L.R_WRIST, L.L_WRIST):
            assert np.linalg.norm(kp[:, wrist, :2] - ref[wrist, :2], axis=-1).max() > 8.0
    again = character_motion(clip, ref, 25.0, np.random.default_rng(8), kind, height=H, width=W)
    np.testing.assert_array_equal(again.keypoints, kp)


def test_synthetic_speech_is_deterministic_and_speech_like():
    sr = 16000
    a = speech_clip(np.random.default_rng(11), 1.5, sr, engine="synthetic")
    assert a.waveform.shape == (1, 24000) and a.sample_rate == sr and a.waveform.dtype == np.float32
    w = a.waveform[0]
    assert np.isfinite(w).all() and np.abs(w).max() <= 1.0 and rms_db(w) > -35
    np.testing.assert_array_equal(w, speech_clip(np.random.default_rng(11), 1.5, sr, engine="synthetic").waveform[0])
    assert not np.array_equal(w, speech_clip(np.random.default_rng(12), 1.5, sr, engine="synthetic").waveform[0])
    # Syllables and pauses: the 20 ms loudness varies a lot.
    frames = w[: len(w) // 320 * 320].reshape(-1, 320)
    level = 10 * np.log10((frames ** 2).mean(1) + 1e-12)
    assert level.max() - np.percentile(level, 10) > 20
    with pytest.raises(ValueError, match="engine"):
        speech_clip(np.random.default_rng(0), 1.0, engine="festival")


def test_espeak_engine_is_optional():
    if not espeak_available():
        with pytest.raises(RuntimeError, match="espeakng-loader"):
            speech_clip(np.random.default_rng(0), 1.0, engine="espeak")
        return
    a = speech_clip(np.random.default_rng(0), 1.0, engine="espeak")
    assert a.waveform.shape == (1, 16000) and np.isfinite(a.waveform).all() and rms_db(a.waveform) > -40
    np.testing.assert_array_equal(a.waveform, speech_clip(np.random.default_rng(0), 1.0, engine="espeak").waveform)


def test_make_world_writes_videos_keypoints_and_styles(tmp_path):
    records = make_world(tmp_path, 2, 1.0, size=(H, W), fps=25, seed=3, engine="synthetic")
    assert [r["id"] for r in records] == ["synth_00000", "synth_00001"]
    world = load_world(tmp_path)
    assert len(world["samples"]) == 2 and isinstance(world["samples"][0]["style"], CharacterStyle)
    for rec in world["samples"]:
        frames, fps = read_video(tmp_path / rec["video"])
        assert frames.shape == (25, H, W, 3) and fps == 25.0
        audio = read_video_audio(tmp_path / rec["video"])
        assert audio is not None and abs(audio.duration - 1.0) < 0.05 and rms_db(audio.mono()) > -40
        seq = PoseSequence.load_json(tmp_path / rec["keypoints"])
        assert len(seq) == 25 and (seq.height, seq.width) == (H, W)
        truth = sample_ground_truth(tmp_path, rec["id"], world)
        np.testing.assert_array_equal(truth, ground_truth(seq.keypoints, rec["style"], H, W))
        np.testing.assert_array_equal(frames, truth)  # lossless by default: training data is the exact truth
    # Sample i depends only on (seed, i).
    again = make_world(tmp_path / "one", 1, 1.0, size=(H, W), seed=3, engine="synthetic")
    assert again[0]["style"] == records[0]["style"]


def test_lossy_world_is_playable_h264_close_to_the_truth(tmp_path):
    records = make_world(tmp_path, 1, 0.4, size=(H, W), seed=3, engine="synthetic", lossless=False)
    frames, _ = read_video(tmp_path / records[0]["video"])
    truth = sample_ground_truth(tmp_path, records[0]["id"])
    assert 0 < np.abs(truth.astype(int) - frames).mean() < 8
    assert load_world(tmp_path)["lossless"] is False


def test_make_world_continues_an_interrupted_world(tmp_path):
    first = make_world(tmp_path, 2, 0.4, size=(H, W), seed=3, engine="synthetic")
    video0 = tmp_path / first[0]["video"]
    stamp = video0.stat().st_mtime_ns
    (tmp_path / first[1]["video"]).unlink()  # the second sample was lost: it is made again
    seen = []
    more = make_world(tmp_path, 3, 0.4, size=(H, W), seed=3, engine="synthetic",
                      progress=lambda i, n, rec: seen.append(i))
    assert seen == [1, 2] and video0.stat().st_mtime_ns == stamp
    assert [r["id"] for r in more] == ["synth_00000", "synth_00001", "synth_00002"]
    assert more[1]["style"] == first[1]["style"]
    # Other settings: the world is written anew.
    seen.clear()
    make_world(tmp_path, 1, 0.4, size=(H, W), seed=4, engine="synthetic", progress=lambda i, n, rec: seen.append(i))
    assert seen == [0] and len(load_world(tmp_path)["samples"]) == 1


def test_cli_writes_a_world(tmp_path, capsys):
    assert cli_main(["--out", str(tmp_path), "--videos", "1", "--seconds", "0.4", "--size", "96x128",
                     "--engine", "synthetic", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "[1/1] synth_00000" in out
    frames, _ = read_video(tmp_path / "videos" / "synth_00000.mp4")
    assert frames.shape == (10, 96, 128, 3)
    assert len(PoseSequence.load_json(tmp_path / "keypoints" / "synth_00000.json")) == 10
