"""Streaming generation: chunked decoding and the wavefront sampler give bit-identical results in bounded memory."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from iasa_core.model.pose_wan import PoseFeatures, drop_condition, drop_pose
from iasa_core.model.presets import get_preset
from iasa_core.model.sparse_patch import sparse_attention_enabled
from iasa_core.model.system import PoseWanSystem
from iasa_core.model.vae_codec import StreamDecoder, decode_latents
from iasa_core.pipeline import (
    GenerateOptions,
    _render,
    fit_poses,
    generate_video,
    pad_to_4n1,
    plan_options,
    stream_video,
    video_size,
)
from iasa_core.pose.render import RenderStyle
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sampling.samplers import anchor_first_frame, cfg_combine, sample_student, sample_teacher
from iasa_core.sampling.schedules import sigma_to_timestep, student_sigmas, teacher_sigmas
from iasa_core.sampling.streaming import stream_sample
from iasa_core.sampling.windows import Window, latent_frames, plan_windows, windowed
from iasa_core.sparse.plan import build_plan

H, W = 32, 64  # latents 4 x 8: the re-noising draws are read a piece at a time (FrameNoise)


def _cut(total: int, sizes: list[int]) -> list[tuple[int, int]]:
    """Consecutive [a, b) ranges of the given sizes (cycled) covering 0..total."""
    out, a, i = [], 0, 0
    while a < total:
        b = min(total, a + sizes[i % len(sizes)])
        out.append((a, b))
        a, i = b, i + 1
    return out


# ----------------------------------------------------------------------------- the VAE


@pytest.mark.parametrize("preset", ["tiny", "cpu-small"])
@pytest.mark.parametrize("chunk", [None, 2])
def test_piecewise_decode_is_bit_identical_to_whole(preset, chunk):
    torch.manual_seed(3)
    vae = AutoencoderKLWan(**get_preset(preset).vae).eval()
    z = torch.randn(1, 16, 11, 4, 6)
    with torch.no_grad():
        whole = decode_latents(vae, z, chunk)
        for sizes in ([1], [3, 1, 5], [7], [11]):
            decoder = StreamDecoder(vae, chunk)
            outs = []
            for a, b in _cut(z.shape[2], sizes):
                outs += decoder.push(z[:, :, a:b].clone())
            outs += decoder.finish()
            assert torch.equal(torch.cat(outs, dim=2), whole), sizes
            if chunk:  # the first latent frame alone, then chunks: pixels come out as soon as one is complete
                assert [o.shape[2] for o in outs] == [1, 8, 8, 8, 8, 8]


def test_system_decode_frames_equals_decode():
    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    z = torch.randn(1, 16, 9, 2, 3)
    whole = system.decode(z)
    pieces = list(system.decode_frames(z[:, :, a:b] for a, b in _cut(9, [2, 3])))
    assert len(pieces) > 1 and np.array_equal(np.concatenate(pieces), whole)
    assert whole.shape == (33, 16, 24, 3) and whole.dtype == np.uint8


# ----------------------------------------------------------------------------- the sampler


def _toy_predictor(seed: int):
    """A deterministic non-linear stand-in for the denoiser; counts its calls per window."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(4, 4, generator=g)
    calls: list[int] = []

    def predict_window(i: int, x: torch.Tensor, sigma: float) -> torch.Tensor:
        calls.append(i)
        y = torch.einsum("oc,bc...->bo...", mix.to(x.dtype), x)
        return torch.tanh(y * (1 + sigma) + 0.1 * i) + x.mean(dim=2, keepdim=True)

    return predict_window, calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["student", "teacher"])
@pytest.mark.parametrize("num_latents,window,overlap", [(5, 6, 2), (23, 6, 2), (22, 5, 1), (40, 7, 3)])
@pytest.mark.parametrize("frame", [(3, 2), (4, 4)], ids=["noise-whole", "noise-piecewise"])
def test_wavefront_sampler_is_bit_identical_to_step_by_step(dtype, kind, num_latents, window, overlap, frame):
    windows = plan_windows(num_latents, window, overlap)
    noise = torch.randn(1, 4, num_latents, *frame, generator=torch.Generator().manual_seed(1)).to(dtype)
    sigmas = student_sigmas([1000, 750, 500, 250], 3.0) if kind == "student" else teacher_sigmas(5, 3.0)
    predict_window, _ = _toy_predictor(0)
    predict = windowed(predict_window, windows, num_latents)
    if kind == "student":
        ref = sample_student(predict, noise, sigmas, generator=torch.Generator().manual_seed(7))
    else:
        ref = sample_teacher(predict, noise, sigmas)

    predict_window, calls = _toy_predictor(0)
    retired, seen = [], []
    pieces = list(stream_sample(predict_window, windows, noise, sigmas, kind=kind,
                                generator=torch.Generator().manual_seed(7), retire=retired.append,
                                callback=lambda done, total: seen.append((done, total))))
    starts = [a for a, _ in pieces]
    assert starts == sorted(starts) and starts[0] == 0
    out = torch.cat([p for _, p in pieces], dim=2)
    assert out.dtype == ref.dtype and torch.equal(out, ref)
    steps = len(sigmas) - (kind == "teacher")
    assert sorted(retired) == list(range(len(windows))) and len(calls) == steps * len(windows)
    assert seen == [(k + 1, steps * len(windows)) for k in range(steps * len(windows))]


def test_wavefront_holds_few_windows_however_long_the_video():
    """Window state lives from a window's first step to its last, latents only between the wavefront's tail
    and head: neither grows with the video's length."""
    from iasa_core.sampling.noise import FrameNoise

    most, held = {}, {}
    for num_latents in (40, 400):
        windows = plan_windows(num_latents, 6, 2)
        alive, peak, frames = set(), [0], [0]
        predict_window, _ = _toy_predictor(0)

        def predict(i, x, sigma, predict_window=predict_window, alive=alive, peak=peak, frames=frames):
            alive.add(i)
            peak[0] = max(peak[0], len(alive))
            frames[0] = max(frames[0], x.untyped_storage().nbytes() // (x.element_size() * 4 * 4 * 4))
            return predict_window(i, x, sigma)

        noise = FrameNoise((1, 4, num_latents, 4, 4), torch.Generator().manual_seed(1))
        for _ in stream_sample(predict, windows, noise, student_sigmas([1000, 750, 500, 250], 3.0),
                               generator=torch.Generator().manual_seed(0), dtype=torch.float32, device="cpu",
                               retire=alive.discard):
            pass
        most[num_latents], held[num_latents] = peak[0], frames[0]
    assert most[400] == most[40] <= 8, most
    assert held[400] == held[40] <= 24, held  # latent frames in the buffer the windows are read from


def test_the_callers_noise_is_not_overwritten():
    predict_window, _ = _toy_predictor(0)
    for windows in (plan_windows(20, 6, 2), plan_windows(5, 6, 2)):
        noise = torch.randn(1, 4, windows[-1].stop, 2, 2)
        kept = noise.clone()
        list(stream_sample(predict_window, windows, noise, student_sigmas([1000, 500], 3.0),
                           generator=torch.Generator().manual_seed(0)))
        assert torch.equal(noise, kept)


def test_cancel_stops_between_window_steps():
    from iasa_core.sampling.samplers import SamplingCancelled

    predict_window, calls = _toy_predictor(0)
    windows = plan_windows(20, 6, 2)
    with pytest.raises(SamplingCancelled):
        list(stream_sample(predict_window, windows, torch.randn(1, 4, 20, 2, 2), student_sigmas([1000, 500], 3.0),
                           generator=torch.Generator().manual_seed(0), cancel=lambda: len(calls) >= 3))
    assert len(calls) == 3


def test_windows_must_cover_the_noise():
    predict_window, _ = _toy_predictor(0)
    with pytest.raises(ValueError, match="cover"):
        next(stream_sample(predict_window, [Window(0, 4)], torch.randn(1, 4, 6, 2, 2), student_sigmas([1000], 3.0)))


# ----------------------------------------------------------------------------- the whole pipeline


@pytest.fixture(scope="module")
def tiny() -> PoseWanSystem:
    return PoseWanSystem.random(get_preset("tiny"), seed=0)


def _inputs(frames: int):
    image = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    return image, PoseSequence(synthetic_keypoints(frames, H, W, seed=1), H, W, fps=25.0)


def _generate_whole(system: PoseWanSystem, image, poses, opt: GenerateOptions) -> np.ndarray:
    """What generate_video did before streaming: every window's state up front, step by step, one decode."""
    hw = video_size(image.shape[:2], opt.size)
    keypoints = pad_to_4n1(fit_poses(poses, image.shape[:2], hw))
    device, dtype = system.device, system.dtype
    kind = system.schedule.get("kind", "student") if opt.sampler == "auto" else opt.sampler
    shift = opt.shift if opt.shift is not None else float(system.schedule.get("shift", 5.0))
    num_latents = latent_frames(len(keypoints))
    windows = plan_windows(num_latents, latent_frames(opt.window_frames), opt.overlap_latents)
    with torch.no_grad():
        condition = system.condition(image, 4 * (windows[0].length - 1) + 1, None)
        ref = system.denoiser.ref_pose_encoder(_render(keypoints[:1], hw, RenderStyle())[:, 0][None]).to(dtype)
        features = [PoseFeatures(system.denoiser.pose_encoder(_render(keypoints[w.video_frames], hw, RenderStyle())[None])
                                 .to(dtype), ref) for w in windows]
    sp = dict(system.sparse, top_k=opt.top_k or system.sparse["top_k"])
    plans = [build_plan(keypoints[w.video_frames], hw, **plan_options(sp)) for w in windows]
    guidance = float(opt.guidance if opt.guidance is not None else 5.0)
    if kind == "teacher" and guidance != 1.0:
        keep = torch.tensor([1.0, 0.0])
        both, feats = drop_condition(condition, keep), [drop_pose(f, keep) for f in features]
    else:
        both, feats = condition, features

    def predict_window(i, x, sigma):
        xb = x.expand(both.y.shape[0], -1, -1, -1, -1)
        t = torch.full((xb.shape[0],), sigma_to_timestep(sigma), dtype=torch.float32)
        with sparse_attention_enabled(system.denoiser, plans[i], opt.backend):
            v = system.denoiser(xb, t, both, feats[i])
        v = cfg_combine(v[:1], v[1:], guidance) if v.shape[0] == 2 else v
        return anchor_first_frame(v, x, condition.y[:1, 4:, :1], sigma) if opt.anchor_first and i == 0 else v

    predict = windowed(predict_window, windows, num_latents)
    generator = torch.Generator().manual_seed(int(opt.seed))
    z = system.config.transformer["out_channels"]
    noise = torch.randn((1, z, num_latents, hw[0] // 8, hw[1] // 8), generator=generator).to(device, dtype)
    with torch.no_grad():
        if kind == "student":
            x0 = sample_student(predict, noise, student_sigmas(opt.timesteps or [1000, 750, 500, 250], shift),
                                generator=generator)
        else:
            x0 = sample_teacher(predict, noise, teacher_sigmas(opt.steps, shift))
        video = system.decode_tensor(x0)
    frames = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).numpy()[: len(poses)]


@pytest.mark.parametrize("opts", [dict(seed=2), dict(seed=5, sampler="teacher", steps=2, guidance=3.0),
                                  dict(seed=2, anchor_first=False)],
                         ids=["student", "teacher-cfg", "free-first-frame"])
def test_streamed_generation_is_bit_identical_to_whole_video_generation(tiny, opts):
    # 47 frames = 12 latent frames in windows of 5 overlapping by 2: 4 windows, the last one pulled back
    image, poses = _inputs(47)
    opt = GenerateOptions(window_frames=17, overlap_latents=2, top_k=1, **opts)
    want = _generate_whole(tiny, image, poses, opt)
    got = generate_video(tiny, image, poses, opt)
    assert got.frames.shape == want.shape == (47, H, W, 3)
    assert np.array_equal(got.frames, want)
    assert len(got.plans) == 4 and got.denoiser_calls == 4 * (4 if opt.sampler != "teacher" else 2)
    assert set(got.timings) == {"conditioning_s", "sampling_s", "decode_s", "restore_s", "frames_s", "total_s"}


def test_timings_split_the_frame_time_once(tiny, monkeypatch):
    # each window's pose features and plan count as conditioning exactly once, whether built before the stream
    # existed (the first window) or while it is read; the three parts add up to the time spent making frames
    from iasa_core import video_stream

    render, builds = video_stream.render_poses_tensor, []

    def slow_render(*args, **kwargs):  # inside each window's build: builds dwarf the rest of the setup
        t0 = time.perf_counter()
        time.sleep(0.5)
        out = render(*args, **kwargs)
        builds.append(time.perf_counter() - t0)
        return out

    monkeypatch.setattr(video_stream, "render_poses_tensor", slow_render)
    image, poses = _inputs(47)
    t = generate_video(tiny, image, poses, GenerateOptions(window_frames=17, overlap_latents=2, top_k=1)).timings
    assert len(builds) == 4
    assert abs(t["conditioning_s"] + t["sampling_s"] + t["decode_s"] + t["restore_s"] - t["frames_s"]) < 1e-6
    assert sum(builds) <= t["conditioning_s"] < sum(builds) + builds[0] and t["decode_s"] > 0


def test_bf16_streamed_generation_is_bit_identical(tiny):
    system = PoseWanSystem.random(get_preset("tiny"), seed=1).to("cpu", torch.bfloat16)
    image, poses = _inputs(29)
    opt = GenerateOptions(window_frames=13, overlap_latents=1, seed=4)
    assert np.array_equal(generate_video(system, image, poses, opt).frames, _generate_whole(system, image, poses, opt))


def test_stream_hands_out_chunks_and_is_read_once(tiny):
    image, poses = _inputs(47)
    stream = stream_video(tiny, image, poses, GenerateOptions(window_frames=17, overlap_latents=2))
    assert len(stream) == 47 and (stream.height, stream.width) == (H, W) and stream.fps == 25.0
    chunks = list(stream.chunks())
    assert len(chunks) > 1 and sum(len(c) for c in chunks) == 47
    # the windows' state is built lazily and dropped after each window's last step
    assert stream.conditioner.live == 0 and len(stream.plans) == 4
    with pytest.raises(RuntimeError, match="only once"):
        next(stream.chunks())


# ----------------------------------------------------------------------------- long motion and pose files


def test_audio_features_in_blocks_equal_all_at_once(monkeypatch):
    from iasa_core.audio import load_audio
    from iasa_core.motion import features

    speech = load_audio(features.__file__.replace("motion/features.py", "assets/demo_speech.wav")).mono(16000)
    monkeypatch.setattr(features, "YIN_BLOCK", 10 ** 9)
    whole = features.audio_features(speech, 16000, 25.0)
    for block in (1, 7, 64):
        monkeypatch.setattr(features, "YIN_BLOCK", block)
        blocked = features.audio_features(speech, 16000, 25.0)
        for name in ("loudness", "voiced", "onset", "onset_frames", "pitch", "pitch_z"):
            assert np.array_equal(getattr(blocked, name), getattr(whole, name)), (block, name)
    assert whole.pitch.max() > 0 and len(whole.onset_frames) > 0


def test_strokes_added_on_their_spans_equal_the_sum_over_all_beats():
    from iasa_core.motion.procedural import _smoothstep, _stroke

    rng = np.random.default_rng(1)
    t = np.arange(3000) / 25.0
    t0 = np.sort(rng.uniform(-1, 125, 400))
    amp = rng.uniform(-0.2, 1.0, 400)
    args = (0.1, 0.2, 0.15, 0.35)
    x = t[None, :] - (t0[:, None] - args[0])
    dense = (amp[:, None] * _smoothstep(x / args[1]) * (1.0 - _smoothstep((x - args[1] - args[2]) / args[3]))).sum(0)
    assert np.array_equal(_stroke(t, t0, amp, *args), dense)
    assert np.array_equal(_stroke(t, t0[:0], amp[:0], *args), np.zeros_like(t))


@pytest.mark.parametrize("frames", [1, 255, 256, 257, 600])
def test_pose_file_written_in_batches_is_the_same_text(tmp_path, frames):
    import json

    seq = PoseSequence(synthetic_keypoints(frames, H, W, seed=2), H, W, fps=30.0)
    seq.keypoints[frames // 2] = 0  # a frame with nobody in it
    seq.save_json(tmp_path / "p.json")
    want = [dict(f, fps=30.0) for f in seq.to_pose_keypoint()]
    assert (tmp_path / "p.json").read_text() == json.dumps(want)
    assert np.array_equal(PoseSequence.load_json(tmp_path / "p.json").keypoints, seq.keypoints)


def test_mask_of_a_long_video_plans_window_by_window(tmp_path, capsys):
    import json

    from iasa_core.__main__ import main

    out = tmp_path / "plan.json"
    assert main(["mask", "--synthetic", "--frames", "301", "--size", "64x64", "--json", str(out),
                 "--preview", str(tmp_path / "p.png")]) == 0
    text = capsys.readouterr().out
    assert "301 frames at 64x64 -> 5 windows of 81 frames" in text and "mean over windows" in text
    s = json.loads(out.read_text())
    assert s["windows"] == len(s["per_window"]) == 5 and s["video_frames"] == 301
    assert all(w["latent_frames"] == 21 for w in s["per_window"]) and (tmp_path / "p.png").is_file()
    # one plan over everything, as before, when asked; and a short video is one plan either way
    assert main(["mask", "--synthetic", "--frames", "301", "--size", "64x64", "--window-frames", "0"]) == 0
    assert "301 frames at 64x64 -> 76 latent frames" in capsys.readouterr().out
    assert main(["mask", "--synthetic", "--frames", "81", "--size", "64x64"]) == 0
    assert "81 frames at 64x64 -> 21 latent frames" in capsys.readouterr().out
    assert main(["mask", "--synthetic", "--frames", "301", "--window-frames", "80"]) == 2
    assert "--window-frames 80: give 4n+1 frames" in capsys.readouterr().err


@pytest.mark.parametrize("shape", [(1, 16, 40, 4, 4), (1, 4, 9, 2, 8), (2, 3, 6, 4, 4), (1, 4, 9, 3, 2)])
def test_frame_noise_equals_one_whole_draw(shape):
    from iasa_core.sampling.noise import FrameNoise

    g = torch.Generator().manual_seed(5)
    whole, after = torch.randn(shape, generator=g), torch.randn(40, generator=g)
    g = torch.Generator().manual_seed(5)
    noise = FrameNoise(shape, g)
    assert torch.equal(torch.randn(40, generator=g), after)  # the generator moved past the whole draw
    pieces, a = [], 0
    for size in [1, 3, 2, 5, 1, 7] * 10:
        if a == shape[2]:
            break
        b = min(shape[2], a + size)
        pieces.append(noise.take(b))
        a = b
    assert torch.equal(torch.cat(pieces, dim=2), whole)
    assert (noise._whole is None) == (math.prod(shape[3:]) % 16 == 0)  # piecewise where randn's blocks allow
    with pytest.raises(ValueError, match="in order"):
        noise.take(1)


def test_large_blocks_get_their_own_mappings_on_glibc():
    import platform

    from iasa_core.memory import map_large_blocks

    assert map_large_blocks() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_flat_memory_is_an_opt_in_of_generate_and_demo():
    from iasa_core.__main__ import build_parser

    parser = build_parser()
    for cmd in (["demo"], ["generate", "--poses", "p.json", "--image", "i.png", "--out", "o.mp4"]):
        assert parser.parse_args(cmd).flat_memory is False  # fresh pages for every big block cost up to 1.6x
        assert parser.parse_args(cmd + ["--flat-memory"]).flat_memory is True


@pytest.mark.parametrize("opts", [dict(), dict(sampler="teacher", steps=3, guidance=2.0)], ids=["student", "teacher"])
def test_first_latent_frame_lands_on_the_reference_latent(tiny, opts):
    image, poses = _inputs(29)
    pieces: list[torch.Tensor] = []
    stream = stream_video(tiny, image, poses, GenerateOptions(window_frames=13, overlap_latents=1, seed=1, **opts))
    stream.check = pieces.append
    list(stream.chunks())
    first = torch.cat(pieces, dim=2)[:, :, :1]
    assert torch.allclose(first, stream.anchor, atol=1e-5)  # the reference image's own clean latent
    with torch.no_grad():
        ref = tiny.condition(image, 13).y[:1, 4:, :1]
    assert torch.equal(stream.anchor, ref)
    free = stream_video(tiny, image, poses, GenerateOptions(window_frames=13, overlap_latents=1, seed=1,
                                                            anchor_first=False, **opts))
    assert free.anchor is None
    other: list[torch.Tensor] = []
    free.check = other.append
    list(free.chunks())
    assert (torch.cat(other, dim=2)[:, :, :1] - ref).abs().max() > 1e-2  # a random model does not copy it


def test_anchor_keeps_the_noised_path_of_training():
    from iasa_core.sampling.samplers import anchor_first_frame

    g = torch.Generator().manual_seed(0)
    anchor, noise = torch.randn(1, 4, 1, 2, 2, generator=g), torch.randn(1, 4, 3, 2, 2, generator=g)
    x, sigmas = noise.clone(), [1.0, 0.7, 0.3, 0.0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        v = anchor_first_frame(torch.randn(x.shape, generator=g), x, anchor, s)
        x = x + (s_next - s) * v
        want = (1 - s_next) * anchor + s_next * noise[:, :, :1]  # x_t = (1 - s) x0 + s noise, as in training
        assert torch.allclose(x[:, :, :1], want, atol=1e-6)
    assert torch.equal(anchor_first_frame(v, x, anchor, 0.0), v)
