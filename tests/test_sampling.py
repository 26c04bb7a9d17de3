"""Schedules, samplers, long-video windows and the generate pipeline/CLI on the tiny preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from iasa_core.__main__ import main
from iasa_core.model.presets import get_preset
from iasa_core.model.system import PoseWanSystem
from iasa_core.pipeline import GenerateOptions, generate_video, pad_to_4n1
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sampling.samplers import SamplingCancelled, sample_student, sample_teacher
from iasa_core.sampling.schedules import shift_sigma, student_sigmas, teacher_sigmas
from iasa_core.sampling.windows import Window, plan_windows, window_weights, windowed


def test_shift_and_schedules():
    assert float(shift_sigma(0.5, 5.0)) == pytest.approx(2.5 / 3.0)
    assert float(shift_sigma(1.0, 5.0)) == 1.0 and float(shift_sigma(0.0, 5.0)) == 0.0
    s = student_sigmas([1000, 750, 500, 250], 5.0)
    assert s.tolist() == pytest.approx([1.0, 3.75 / 4.0, 2.5 / 3.0, 1.25 / 2.0])
    t = teacher_sigmas(10, 3.0)
    assert len(t) == 11 and t[0] == 1.0 and t[-1] == 0.0 and bool((t[1:] < t[:-1]).all())
    with pytest.raises(ValueError, match="must decrease"):
        student_sigmas([500, 750])


def _oracle(x0: torch.Tensor):
    """The exact flow of a single clean sample: v = (x - x0) / sigma."""
    return lambda x, sigma: (x - x0) / sigma


def test_samplers_reach_the_clean_sample_with_an_exact_predictor():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 4, 3, 2, 2, generator=g), torch.randn(1, 4, 3, 2, 2, generator=g)
    out = sample_teacher(_oracle(x0), noise, teacher_sigmas(7, 5.0))
    assert torch.allclose(out, x0, atol=1e-5)
    seen = []
    out = sample_student(_oracle(x0), noise, student_sigmas(), generator=g, callback=lambda i, n: seen.append((i, n)))
    assert torch.allclose(out, x0, atol=1e-5) and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_student_renoises_to_the_next_level():
    levels = []

    def predict(x, sigma):
        levels.append((sigma, float(x.std())))
        return x  # x0 = x - sigma*x = (1 - sigma) x

    sample_student(predict, torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(0)),
                   student_sigmas(), generator=torch.Generator().manual_seed(1))
    for sigma, std in levels[1:]:  # re-noised: std of (1-s) x0 + s * fresh is at least s
        assert std >= sigma * 0.95


def test_cancel_between_steps():
    calls = []
    with pytest.raises(SamplingCancelled, match="after step 2 of 4"):
        sample_student(lambda x, s: calls.append(s) or x, torch.zeros(1, 1, 1, 1, 1), student_sigmas(),
                       cancel=lambda: len(calls) >= 2)
    assert len(calls) == 2


def test_window_plan_and_weights():
    assert plan_windows(21) == [Window(0, 21)]
    wins = plan_windows(50, 21, 4)
    assert [w.length for w in wins] == [21, 21, 21] and wins[0].start == 0 and wins[-1].stop == 50
    assert all(a.stop - b.start >= 4 for a, b in zip(wins, wins[1:], strict=False))
    w = window_weights(wins, 50)
    assert torch.allclose(w.sum(0), torch.ones(50, dtype=torch.float64))
    assert Window(5, 26).video_frames == slice(20, 101)
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(50, 21, 21)


def test_windows_fuse_without_a_seam():
    # A window-agnostic predictor: fusing per-window predictions must give exactly the whole-video one.
    x = torch.randn(1, 3, 13, 2, 2, generator=torch.Generator().manual_seed(0))
    f = lambda t: torch.tanh(t) * 0.5  # noqa: E731
    wins = plan_windows(13, 5, 2)
    assert len(wins) > 2
    fused = windowed(lambda i, xw, s: f(xw), wins, 13)(x, 0.5)
    assert torch.allclose(fused, f(x), atol=1e-6)


@pytest.fixture(scope="module")
def tiny() -> PoseWanSystem:
    return PoseWanSystem.random(get_preset("tiny"), seed=0)


H, W = 64, 48


def _image(h=H, w=W) -> np.ndarray:
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


def _poses(n: int, h=H, w=W) -> PoseSequence:
    return PoseSequence(synthetic_keypoints(n, h, w, seed=1), h, w, fps=25.0)


def test_generate_shapes_determinism_and_progress(tiny):
    steps = []
    a = generate_video(tiny, _image(), _poses(11), GenerateOptions(seed=3), callback=lambda i, n: steps.append(i))
    assert a.frames.shape == (11, H, W, 3) and a.frames.dtype == np.uint8 and a.fps == 25.0
    assert steps == [1, 2, 3, 4] and a.denoiser_calls == 4 and len(a.plans) == 1
    b = generate_video(tiny, _image(), _poses(11), GenerateOptions(seed=3))
    c = generate_video(tiny, _image(), _poses(11), GenerateOptions(seed=4))
    assert np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)
    assert len(pad_to_4n1(np.zeros((11, 133, 3)))) == 13


def test_generate_sparse_equals_dense_masked_and_teacher_runs(tiny):
    opts = dict(seed=1, top_k=1)
    gathered = generate_video(tiny, _image(), _poses(9), GenerateOptions(backend="gather", **opts))
    masked = generate_video(tiny, _image(), _poses(9), GenerateOptions(backend="dense", **opts))
    assert np.abs(gathered.frames.astype(int) - masked.frames.astype(int)).max() <= 1
    teacher = generate_video(tiny, _image(), _poses(9), GenerateOptions(sampler="teacher", steps=2, guidance=3.0))
    assert teacher.frames.shape == (9, H, W, 3) and teacher.denoiser_calls == 2  # cond+uncond batched


def test_long_video_windows_join(tiny):
    # 29 frames = 8 latent frames in windows of 5 latent frames (17 video frames) overlapping by 2.
    r = generate_video(tiny, _image(), _poses(29), GenerateOptions(window_frames=17, overlap_latents=2))
    assert r.frames.shape[0] == 29 and len(r.plans) == 2 and r.denoiser_calls == 8
    diffs = np.abs(np.diff(r.frames.astype(float), axis=0)).mean(axis=(1, 2, 3))
    seam = diffs[4 * 3 - 1: 4 * 5]  # frames around the shared latent frames 3-4
    assert seam.max() <= diffs.max() and np.isfinite(diffs).all()


def test_generate_errors(tiny):
    with pytest.raises(ValueError, match="canvas but the reference image is"):
        generate_video(tiny, _image(64, 64), _poses(9))
    with pytest.raises(ValueError, match="multiples of 16"):
        generate_video(tiny, _image(), _poses(9), GenerateOptions(size=(60, 48)))
    with pytest.raises(ValueError, match="window_frames"):
        generate_video(tiny, _image(), _poses(9), GenerateOptions(window_frames=10))


def test_generate_cli_end_to_end(tmp_path, capsys):
    _poses(9).save_json(tmp_path / "poses.json")
    Image.fromarray(_image()).save(tmp_path / "ref.png")
    out = tmp_path / "out.mp4"
    rc = main(["generate", "--poses", str(tmp_path / "poses.json"), "--image", str(tmp_path / "ref.png"),
               "--model", "tiny", "--out", str(out)])
    assert rc == 0 and out.is_file()
    from iasa_core.media import read_video

    frames, fps = read_video(out)
    # The model's own size (tiny: 64 on the short side) with the image's aspect ratio, not the image's size.
    assert frames.shape == (9, 80, 64, 3) and fps == pytest.approx(25.0)
    said = capsys.readouterr().out
    assert "block density per window" in said and ", restore" not in said  # the tiny model restores nothing
    rc = main(["generate", "--poses", str(tmp_path / "poses.json"), "--image", str(tmp_path / "ref.png"),
               "--model", "tiny", "--out", str(tmp_path / "body.mp4"), "--body-restore", "on"])
    said = capsys.readouterr().out
    assert rc == 0 and ", restore " in said and "body restore: " in said


def test_generate_cli_errors(tmp_path, capsys):
    _poses(9).save_json(tmp_path / "poses.json")
    Image.fromarray(_image(64, 64)).save(tmp_path / "square.png")
    base = ["generate", "--poses", str(tmp_path / "poses.json"), "--out", str(tmp_path / "o.mp4")]
    assert main(base + ["--image", str(tmp_path / "square.png")]) == 2
    assert "canvas but the reference image is" in capsys.readouterr().err
    Image.fromarray(_image()).save(tmp_path / "ref.png")
    assert main(base + ["--image", str(tmp_path / "ref.png"), "--model", str(tmp_path / "student.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "student.safetensors" in err and "was not found" in err
    assert not (tmp_path / "o.mp4").exists()


def test_generate_cli_prompt_needs_text_encoder(tmp_path, capsys):
    _poses(5).save_json(tmp_path / "poses.json")
    Image.fromarray(_image()).save(tmp_path / "ref.png")
    assert main(["generate", "--poses", str(tmp_path / "poses.json"), "--image", str(tmp_path / "ref.png"),
                 "--out", str(tmp_path / "o.mp4"), "--prompt", "a person talking"]) == 2
    assert "--text-encoder" in capsys.readouterr().err
