"""The embedded model's training pieces: VAE trainer, initial model file, clip cache, attention mix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iasa_core.model.checkpoint import load_student
from tests.test_training import SIZE, _teacher_cfg, dataset_root  # noqa: F401 (fixture)
from training.config import ConfigError, SparseConfig
from training.model_setup import step_sparse

TINY_VAE = {"base_dim": 4, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 0,
            "temperal_downsample": [False, True, True]}


@pytest.fixture(scope="module")
def vae_file(dataset_root, tmp_path_factory):  # noqa: F811
    from training.train_vae import VaeTrainConfig, train_vae

    out = tmp_path_factory.mktemp("vae")
    cfg = VaeTrainConfig(data=str(dataset_root), out=str(out), vae=dict(TINY_VAE), steps=6, batch=2,
                         crop=32, log_every=3, stats_clips=2)
    return train_vae(cfg)


def test_vae_training_runs_and_stores_latent_statistics(vae_file):
    from training.train_vae import load_vae

    rows = [json.loads(line) for line in (vae_file.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and all(r["psnr"] > 0 for r in rows)
    vae, config = load_vae(vae_file)
    assert len(config["latents_mean"]) == len(config["latents_std"]) == 16
    assert all(s > 0 for s in config["latents_std"])
    assert list(vae.config.latents_mean) == config["latents_mean"]


def test_vae_loss_falls_on_a_fixed_batch(dataset_root):  # noqa: F811
    from diffusers import AutoencoderKLWan

    from iasa_core.model.vae_codec import decode_latents, encode_moments
    from training.data import ClipDataset
    from training.train_vae import VaeTrainConfig, _windows

    torch.manual_seed(0)
    x, labels = _windows(ClipDataset(dataset_root), VaeTrainConfig(data="", out="", batch=2, crop=32),
                         torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 5, 32, 32) and x.min() >= -1 and x.max() <= 1 and labels.shape == (2, 5, 32, 32)
    vae = AutoencoderKLWan(**TINY_VAE).train()
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        rec = decode_latents(vae, encode_moments(vae, x).chunk(2, dim=1)[0], clamp=False)
        loss = ((rec - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_init_model_holds_the_trained_vae(vae_file, tmp_path):
    from training.init_model import init_model
    from training.train_vae import load_vae

    path = init_model("tiny", vae_file, tmp_path / "init.safetensors", sparse={"block_size": 16})
    system = load_student(path)
    vae, config = load_vae(vae_file)
    for (k, a), (_, b) in zip(vae.state_dict().items(), system.vae.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert system.config.vae["latents_std"] == config["latents_std"]
    assert system.schedule["kind"] == "teacher" and system.sparse["block_size"] == 16
    wide = load_student(init_model("tiny", vae_file, tmp_path / "wide.safetensors", pose_hidden=16))
    assert wide.config.pose_hidden == 16
    assert wide.denoiser.pose_encoder.convs[0].out_channels == wide.denoiser.ref_pose_encoder.convs[0].out_channels == 16
    with pytest.raises(ValueError, match="pose_hidden"):
        init_model("tiny", vae_file, tmp_path / "x.safetensors", pose_hidden=0)


def test_init_model_can_start_from_a_trained_denoiser_on_a_new_vae(vae_file, tmp_path):
    from iasa_core.model.checkpoint import save_student
    from training.init_model import init_model, main
    from training.train_vae import load_vae

    source = load_student(init_model("tiny", vae_file, tmp_path / "src.safetensors", seed=3))
    with torch.no_grad():
        for p in source.vae.parameters():
            p.add_(0.5)  # the "old" VAE, unlike the new one
    source.schedule = dict(source.schedule, kind="student", pose_face=True)
    save_student(source, tmp_path / "old.safetensors")
    warm = load_student(init_model("tiny", vae_file, tmp_path / "warm.safetensors",
                                   denoiser_from=tmp_path / "old.safetensors"))
    for part in ("denoiser", "image_encoder"):
        a, b = getattr(source, part).state_dict(), getattr(warm, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    new_vae = load_vae(vae_file)[0].state_dict()
    assert all(torch.equal(new_vae[k], v) for k, v in warm.vae.state_dict().items())
    assert torch.equal(warm.prompt_embeds, source.prompt_embeds)
    assert warm.schedule["kind"] == "teacher" and warm.schedule["pose_face"] is True
    with pytest.raises(ValueError, match="widen_pose"):
        init_model("tiny", vae_file, tmp_path / "x.safetensors", pose_hidden=16,
                   denoiser_from=tmp_path / "old.safetensors")
    assert main(["--vae", str(vae_file), "--out", str(tmp_path / "y.safetensors"),
                 "--denoiser-from", str(tmp_path / "missing.safetensors")]) == 2


def test_init_model_sets_the_flag_on_a_warm_start(vae_file, tmp_path):
    from training.init_model import init_model, main

    src = init_model("tiny", vae_file, tmp_path / "src.safetensors", seed=3)
    assert not load_student(src).config.ref_every_frame
    assert main(["--vae", str(vae_file), "--denoiser-from", str(src), "--ref-every-frame",
                 "--out", str(tmp_path / "ref.safetensors")]) == 0
    warm = load_student(tmp_path / "ref.safetensors")
    assert warm.config.ref_every_frame
    source = load_student(src).denoiser.state_dict()
    assert all(torch.equal(v, source[k]) for k, v in warm.denoiser.state_dict().items())
    # without --vae the model keeps its own VAE, latent statistics included
    assert main(["--denoiser-from", str(src), "--ref-every-frame", "--out", str(tmp_path / "own.safetensors")]) == 0
    own, old = load_student(tmp_path / "own.safetensors"), load_student(src)
    assert own.config.ref_every_frame and own.config.vae == old.config.vae
    assert all(torch.equal(v, old.vae.state_dict()[k]) for k, v in own.vae.state_dict().items())
    assert main(["--out", str(tmp_path / "none.safetensors")]) == 2


def test_init_model_refuses_a_vae_with_other_latent_channels(vae_file, tmp_path, monkeypatch):
    from training import init_model as mod

    real = mod.load_vae

    def other_z(path):
        vae, config = real(path)
        return vae, dict(config, z_dim=8)

    monkeypatch.setattr(mod, "load_vae", other_z)
    with pytest.raises(ValueError, match="z_dim 8"):
        mod.init_model("tiny", vae_file, tmp_path / "x.safetensors")


def test_sample_cache_reuses_the_frozen_encodings(dataset_root):  # noqa: F811
    from training.batch import SampleCache, prepare_sample
    from training.config import ModelSpec
    from training.data import ClipDataset
    from training.model_setup import load_system

    system = load_system(ModelSpec(spec="tiny"), torch.device("cpu"))
    item = ClipDataset(dataset_root)[0]
    cache = SampleCache()
    sparse = {"top_k": 2, "block_size": 16}
    a = prepare_sample(system, item, sparse=sparse, cache=cache)
    calls = []
    original = system.encode
    system.encode = lambda v: calls.append(1) or original(v)
    b = prepare_sample(system, item, sparse=sparse, cache=cache)
    assert not calls and len(cache) == 2  # second time: nothing encoded (one encoding + one plan cached)
    fresh = prepare_sample(system, item, sparse=sparse, cache=None)
    assert calls  # without a cache it encodes again
    for s in (b, fresh):
        assert torch.equal(s.latents, a.latents) and torch.equal(s.pose_video, a.pose_video)
        assert torch.equal(s.ref_pose, a.ref_pose) and torch.equal(s.condition.y, a.condition.y)
    assert a.pose_video.shape == (1, 3, item["frames"].shape[0], SIZE, SIZE)
    cache.clear()
    assert len(cache) == 0


def test_clips_of_two_datasets_under_one_id_never_share_a_cache_entry(dataset_root, tmp_path):  # noqa: F811
    # Clip ids come from video file names, so another world's synth_00000.mp4 has the same id: keyed by id alone,
    # a second dataset (data.more_roots) read the first one's latents with its own poses (2026-12, fixed).
    from training.batch import SampleCache, clip_identity, prepare_sample
    from training.config import ModelSpec
    from training.data import ClipDataset
    from training.model_setup import load_system

    system = load_system(ModelSpec(spec="tiny"), torch.device("cpu"))
    data = ClipDataset(dataset_root)
    first, other = data[0], dict(data[1])
    other["clip_id"] = first["clip_id"]
    assert clip_identity(first) != clip_identity(other) and clip_identity(first) == clip_identity(data[0])
    sparse = {"top_k": 2, "block_size": 16}
    for cache in (SampleCache(), SampleCache(True, tmp_path, system)):
        a = prepare_sample(system, first, sparse=sparse, cache=cache)
        b = prepare_sample(system, other, sparse=sparse, cache=cache)
        truth = prepare_sample(system, other, sparse=sparse, cache=None)
        assert not torch.equal(a.latents, b.latents)
        assert torch.equal(b.latents, truth.latents) and torch.equal(b.condition.y, truth.condition.y)
        assert torch.equal(b.pose_video, truth.pose_video)
        assert np.array_equal(b.plan.similarity, truth.plan.similarity)  # the plan follows the clip's own poses
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2


def test_disk_sample_cache_survives_the_process_and_is_keyed_by_the_vae(dataset_root, tmp_path):  # noqa: F811
    from training.batch import SampleCache, prepare_sample
    from training.config import ModelSpec
    from training.data import ClipDataset
    from training.model_setup import load_system

    system = load_system(ModelSpec(spec="tiny"), torch.device("cpu"))
    item = ClipDataset(dataset_root)[0]
    a = prepare_sample(system, item, sparse=None, cache=SampleCache(True, tmp_path, system))
    files = list(tmp_path.rglob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.part"))

    def no_encoding(v):
        raise AssertionError("encoded although the disk cache holds the clip")

    original = system.encode
    system.encode = no_encoding  # a new cache object (a resumed run) reads the file instead of encoding
    b = prepare_sample(system, item, sparse=None, cache=SampleCache(True, tmp_path, system))
    system.encode = original
    assert torch.equal(b.latents, a.latents) and torch.equal(b.condition.y, a.condition.y)
    assert torch.equal(b.condition.text, a.condition.text) and torch.equal(b.pose_video, a.pose_video)
    assert (b.condition.image is None) == (a.condition.image is None)
    if a.condition.image is not None:
        assert torch.equal(b.condition.image, a.condition.image)

    files[0].write_bytes(b"torn")  # a half-written or foreign file is encoded again, not trusted
    c = prepare_sample(system, item, sparse=None, cache=SampleCache(True, tmp_path, system))
    assert torch.equal(c.latents, a.latents)

    with torch.no_grad():  # another VAE: another folder, so its latents are never mixed up with these
        next(system.vae.parameters()).add_(0.01)
    prepare_sample(system, item, sparse=None, cache=SampleCache(True, tmp_path, system))
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    with pytest.raises(ValueError, match="needs the system"):
        SampleCache(True, tmp_path)
    # bf16 encodings (CPUs with AMX) go to their own folder and come back as float32, close to the fp32 ones
    d = prepare_sample(system, item, sparse=None, cache=SampleCache(True, tmp_path, system, encode_bf16=True),
                       encode_bf16=True)
    assert len([p for p in tmp_path.iterdir() if p.name.endswith("-bf16")]) == 1
    assert d.latents.dtype == torch.float32 and d.condition.y.dtype == torch.float32


def test_attention_mix_draws_dense_global_and_local_by_sample():
    cfg = SparseConfig(dense_fraction=0.3, global_fraction=0.3)
    sparse = {"top_k": 2, "block_size": 16}
    kinds = []
    for k in range(600):
        s = step_sparse(sparse, cfg, 0, k)
        kinds.append("dense" if s is None else ("global" if s.get("local") is False else "local"))
        assert step_sparse(sparse, cfg, 0, k) == s  # a function of (seed, sample): resumes repeat it
    shares = {name: kinds.count(name) / len(kinds) for name in ("dense", "global", "local")}
    assert abs(shares["dense"] - 0.3) < 0.07 and abs(shares["global"] - 0.3) < 0.07
    assert abs(shares["local"] - 0.4) < 0.07
    assert step_sparse(sparse, SparseConfig(), 0, 5) is sparse
    assert step_sparse(None, cfg, 0, 5) is None
    with pytest.raises(ConfigError, match="dense_fraction"):
        SparseConfig(dense_fraction=0.8, global_fraction=0.5)


def test_teacher_trains_with_the_attention_mix(dataset_root, tmp_path):  # noqa: F811
    from training.config import from_dict, to_dict
    from training.finetune_teacher import train_teacher

    base = to_dict(_teacher_cfg(dataset_root, tmp_path / "t", steps=3))
    base["sparse"].update({"dense_fraction": 0.5, "global_fraction": 0.25})
    base["lora"] = {"rank": 0}
    out = train_teacher(from_dict(type(_teacher_cfg(dataset_root, tmp_path)), base))
    assert len(out["losses"]) == 3 and all(torch.isfinite(torch.tensor(out["losses"])))


def _vae_cfg(root, out, **kw):
    from training.train_vae import VaeTrainConfig

    base = dict(data=str(root), out=str(out), vae=dict(TINY_VAE), steps=4, batch=1, crop=16, long_every=2,
                long_window_latents=3, long_crop=16, long_batch=1, save_every=2, log_every=1, stats_clips=1,
                precision="fp32")
    return VaeTrainConfig(**{**base, **kw})


def test_vae_training_resumes_to_the_same_weights(dataset_root, tmp_path, monkeypatch):  # noqa: F811
    from safetensors.torch import load_file

    import training.train_vae as mod

    whole = mod.train_vae(_vae_cfg(dataset_root, tmp_path / "a"))
    real, calls = mod._windows, []

    def dies_at_step_3(*args, **kwargs):
        calls.append(kwargs.get("long", False))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the run were stopped during step 3
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, "_windows", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        mod.train_vae(_vae_cfg(dataset_root, tmp_path / "b"))
    assert calls == [False, True, False]  # every long_every-th step trains the long windows
    monkeypatch.setattr(mod, "_windows", real)
    resumed = mod.train_vae(_vae_cfg(dataset_root, tmp_path / "b"))
    a, b = load_file(str(whole)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        mod.train_vae(_vae_cfg(dataset_root, tmp_path / "b", lr=1e-2))


def test_vae_checkpoints_from_before_a_new_setting_still_resume(dataset_root):  # noqa: F811
    from dataclasses import asdict

    from training.train_vae import same_settings

    cfg = _vae_cfg(dataset_root, "unused")
    old = {k: v for k, v in asdict(cfg).items() if k not in ("pca_weight", "pca_fade_steps", "pca_clips")}
    assert same_settings(old, cfg) and same_settings(asdict(cfg), cfg)
    guided = _vae_cfg(dataset_root, "unused", pca_weight=1.0)
    assert not same_settings(old, guided)  # the new setting differs from its default: not the same run
    assert not same_settings(dict(old, lr=1.0), cfg) and not same_settings(dict(old, retired=1), cfg)
    assert not same_settings(None, cfg)


def test_vae_long_windows_have_their_own_shape(dataset_root):  # noqa: F811
    from training.data import ClipDataset
    from training.train_vae import _windows

    cfg = _vae_cfg(dataset_root, "unused", batch=3, crop=32, long_window_latents=3, long_crop=16, long_batch=2)
    g = torch.Generator().manual_seed(0)
    assert _windows(ClipDataset(dataset_root), cfg, g)[0].shape == (3, 3, 5, 32, 32)
    x, labels = _windows(ClipDataset(dataset_root), cfg, g, long=True)
    assert x.shape == (2, 3, 9, 16, 16) and labels.shape == (2, 9, 16, 16)


def test_long_windows_past_the_clip_play_it_back_and_forth(dataset_root):  # noqa: F811
    from training.data import ClipDataset
    from training.train_vae import _windows, mirror_frames

    clip = torch.arange(5)
    assert mirror_frames(clip, 13).tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert mirror_frames(clip, 3).tolist() == [0, 1, 2]
    # windows longer than the dataset's clips (the decoder's receptive field is longer than an 81-frame clip)
    frames = ClipDataset(dataset_root)[0]["frames"].shape[0]
    latents = (2 * frames - 1 - 1) // 4 + 1
    cfg = _vae_cfg(dataset_root, "unused", long_window_latents=latents, long_crop=16, long_batch=1)
    x, labels = _windows(ClipDataset(dataset_root), cfg, torch.Generator().manual_seed(0), long=True)
    assert x.shape[2] == 4 * (latents - 1) + 1 > frames
    turn = frames - 1
    assert torch.equal(x[0, :, turn - 1], x[0, :, turn + 1])  # mirrored around the clip's last frame
    assert torch.equal(labels[0, turn - 1], labels[0, turn + 1])  # the labels stay with their frames


def test_vae_training_in_bf16_learns(dataset_root, tmp_path):  # noqa: F811
    from training.train_vae import train_vae

    path = train_vae(_vae_cfg(dataset_root, tmp_path, steps=30, lr=3e-3, long_every=0, crop=32,
                              precision="bf16", log_every=10, eval_clips=1, eval_every=30))
    rows = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["psnr"] > rows[0]["psnr"] + 1.0
    last = rows[-1]
    assert len(last["eval_psnr_per_latent"]) == 21 and last["eval_psnr_worst_latent"] <= last["eval_psnr_first"] + 30
    assert all(0 < v < 60 for v in last["eval_psnr_per_latent"])


def test_decoder_only_fine_tune_keeps_the_latents_and_swaps_into_model_files(vae_file, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from training.init_model import init_model
    from training.recipes.export_embedded import replace_decoder
    from training.train_vae import encoder_state, load_vae, train_vae

    data = json.loads((vae_file.parent / "config.json").read_text())["data"]
    tuned = train_vae(_vae_cfg(data, tmp_path / "dec", init=str(vae_file), decoder_only=True, steps=3))
    (before, cfg_a), (after, cfg_b) = load_vae(vae_file), load_vae(tuned)
    enc_a, enc_b = encoder_state(before), encoder_state(after)
    assert enc_a.keys() == enc_b.keys() and all(torch.equal(enc_a[k], enc_b[k]) for k in enc_a)
    assert cfg_a["latents_mean"] == cfg_b["latents_mean"] and cfg_a["latents_std"] == cfg_b["latents_std"]
    a, b = load_file(str(vae_file)), load_file(str(tuned))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))  # the decoder did train

    system = load_student(init_model("tiny", vae_file, tmp_path / "m.safetensors"))
    replace_decoder(system, tuned)
    for k, v in system.vae.state_dict().items():
        assert torch.equal(v, b[k].to(v.dtype)), k
    other = train_vae(_vae_cfg(data, tmp_path / "other", steps=2))  # a different encoder is refused
    with pytest.raises(ValueError, match="encoder or latent statistics differ"):
        replace_decoder(system, other)
    with pytest.raises(ValueError, match="needs --init"):
        train_vae(_vae_cfg(data, tmp_path / "x", decoder_only=True))


def test_lr_schedule_warms_up_then_decays():
    from training.config import OptimConfig
    from training.model_setup import lr_factor

    const = OptimConfig(warmup_steps=4)
    assert [lr_factor(s, const, 100) for s in (0, 3, 50, 99)] == [0.25, 1.0, 1.0, 1.0]
    cos = OptimConfig(warmup_steps=4, decay="cosine", min_lr_ratio=0.1)
    assert lr_factor(3, cos, 104) == 1.0 and lr_factor(4, cos, 104) == pytest.approx(1.0)
    assert lr_factor(54, cos, 104) == pytest.approx(0.55) and lr_factor(104, cos, 104) == pytest.approx(0.1)
    assert lr_factor(500, cos, 104) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="optim.decay"):
        OptimConfig(decay="linear")


def test_teacher_exports_its_weight_average(dataset_root, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    from training.config import from_dict, to_dict
    from training.finetune_teacher import train_teacher

    data = to_dict(_teacher_cfg(dataset_root, tmp_path, steps=3, save_every=3))
    data["ema"] = 0.5
    data["lora"] = {"rank": 0}  # full fine-tune: the exported weights are the average itself
    data["optim"].update(decay="cosine", warmup_steps=1)
    cfg = from_dict(type(_teacher_cfg(dataset_root, tmp_path)), data)
    result = train_teacher(cfg)
    ckpt = load_file(str(tmp_path / "checkpoints" / "step-0000003" / "weights.safetensors"))
    ema = {k.removeprefix("ema/"): v for k, v in ckpt.items() if k.startswith("ema/")}
    last = {k.removeprefix("denoiser/"): v for k, v in ckpt.items() if k.startswith("denoiser/")}
    assert ema.keys() == last.keys() and any(not torch.equal(ema[k], last[k]) for k in ema)
    exported = dict(load_student(result["exported"]["model"]).denoiser.named_parameters())
    for name, value in ema.items():
        assert torch.equal(exported[name.removeprefix("denoiser.")], value), name

    import yaml

    from training.snapshot import (
        main as snapshot_main,  # a mid-run look writes the same file from the checkpoint
    )

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    assert snapshot_main(["--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "snap.safetensors")]) == 0
    snap = dict(load_student(tmp_path / "snap.safetensors").denoiser.named_parameters())
    assert snap.keys() == exported.keys() and all(torch.equal(snap[k], exported[k]) for k in snap)
    assert snapshot_main(["--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "last.safetensors"),
                          "--weights", "last"]) == 0
    newest = dict(load_student(tmp_path / "last.safetensors").denoiser.named_parameters())
    for name, value in last.items():
        assert torch.equal(newest[name.removeprefix("denoiser.")], value), name
    assert snapshot_main(["--config", str(tmp_path / "cfg.yaml"), "--set", f"run.output_dir={tmp_path / 'none'}",
                          "--out", str(tmp_path / "x.safetensors")]) == 2


def test_uncond_dropout_drops_pose_and_image_together(dataset_root, tmp_path):  # noqa: F811
    from training.batch import PosedDenoiser, prepare_sample
    from training.config import ModelSpec, from_dict, to_dict
    from training.data import ClipDataset
    from training.finetune_teacher import teacher_loss
    from training.model_setup import load_system

    system = load_system(ModelSpec(spec="tiny"), torch.device("cpu"))
    sample = prepare_sample(system, ClipDataset(dataset_root)[0], sparse=None)
    model = PosedDenoiser(system.denoiser)
    data = to_dict(_teacher_cfg(dataset_root, tmp_path))
    kept = []
    for rate in (0.0, 1.0):
        data["flow"].update(pose_dropout=0.0, image_dropout=0.0, uncond_dropout=rate)
        cfg = from_dict(type(_teacher_cfg(dataset_root, tmp_path)), data)
        parts = teacher_loss(model, sample, torch.Generator().manual_seed(0), cfg, torch.device("cpu"), backward=False)
        kept.append((parts["keep_pose"], parts["keep_image"]))
    assert kept == [(1.0, 1.0), (0.0, 0.0)]


def test_warm_cache_writes_what_the_trainer_reads(dataset_root, tmp_path, capsys):  # noqa: F811
    from training.batch import SampleCache, prepare_sample
    from training.config import ModelSpec
    from training.data import ClipDataset
    from training.model_setup import load_system
    from training.warm_cache import main, parse_shard, warm_cache

    model = tmp_path / "model.safetensors"
    from iasa_core.model.checkpoint import save_student

    save_student(load_system(ModelSpec(spec="tiny"), torch.device("cpu")), model)
    cache_dir = tmp_path / "encoded"
    # two shards share the work; together they cover every clip once
    assert warm_cache(str(model), str(dataset_root), str(cache_dir), precision="fp32", shard=(0, 2),
                      log=lambda s: None) == {"encoded": 1, "skipped": 0}
    assert main(["--model", str(model), "--data", str(dataset_root), "--cache-dir", str(cache_dir),
                 "--precision", "fp32"]) == 0
    assert "2/2 clips (1 encoded, 1 already cached)" in capsys.readouterr().out
    assert len(list(cache_dir.rglob("*.safetensors"))) == 2

    system = load_system(ModelSpec(spec=str(model)), torch.device("cpu"))  # what the trainer loads

    def no_encoding(v):
        raise AssertionError("the trainer encoded a clip the warmed cache holds")

    original, system.encode = system.encode, no_encoding
    for item in ClipDataset(dataset_root):
        prepare_sample(system, item, sparse=None, cache=SampleCache(True, cache_dir, system))
    system.encode = original
    fresh = prepare_sample(system, ClipDataset(dataset_root)[1], sparse=None)
    cached = prepare_sample(system, ClipDataset(dataset_root)[1], sparse=None,
                            cache=SampleCache(True, cache_dir, system))
    assert torch.equal(fresh.latents, cached.latents) and torch.equal(fresh.condition.y, cached.condition.y)
    with pytest.raises(ValueError, match="I/N"):
        parse_shard("2")
    with pytest.raises(ValueError, match="0..N-1"):
        parse_shard("2/2")


def test_vae_region_weights_count_face_and_hand_pixels_more(dataset_root, tmp_path):  # noqa: F811
    from iasa_core.pose.layout import REGION_BODY, REGION_FACE, REGION_HANDS
    from training.train_vae import pixel_weights, train_vae, weighted_mean

    labels = torch.tensor([[[[0, REGION_FACE], [REGION_HANDS, REGION_BODY]]]])  # (1, 1, 2, 2)
    assert pixel_weights(_vae_cfg(dataset_root, "unused"), labels) is None  # the plain mean by default
    w = pixel_weights(_vae_cfg(dataset_root, "unused", face_weight=8.0, hands_weight=4.0), labels)
    assert w.shape == (1, 1, 1, 2, 2) and w.flatten().tolist() == [1.0, 9.0, 5.0, 1.0]
    err = torch.rand(1, 3, 1, 2, 2)
    assert torch.allclose(weighted_mean(err, torch.ones_like(w)), err.mean())
    expected = (err * w).sum() / (w.sum() * 3)
    assert torch.allclose(weighted_mean(err, w), expected)
    with pytest.raises(ValueError, match="face-weight"):
        train_vae(_vae_cfg(dataset_root, tmp_path / "v", face_weight=-1.0))
    out = train_vae(_vae_cfg(dataset_root, tmp_path / "w", face_weight=8.0, hands_weight=4.0, steps=2))
    assert out.is_file()


def test_vae_pca_guide_pulls_the_encoder_towards_the_linear_codec(dataset_root, tmp_path):  # noqa: F811
    import json

    from iasa_core.bench import block_pca
    from training.data import ClipDataset
    from training.train_vae import fit_pca_guide, pca_guide_fade, train_vae

    cfg = _vae_cfg(dataset_root, tmp_path / "g", pca_weight=2.0, pca_decoder_weight=1.0, pca_fade_steps=4,
                   pca_clips=2, steps=5)
    assert [pca_guide_fade(cfg, s) for s in (1, 2, 4, 5, 9)] == [1.0, 0.75, 0.25, 0.0, 0.0]
    assert pca_guide_fade(_vae_cfg(dataset_root, "unused", pca_weight=2.0), 10 ** 6) == 1.0  # no fade
    pca, scale = fit_pca_guide(ClipDataset(dataset_root), cfg)
    assert pca.channels == TINY_VAE["z_dim"] and scale > 0
    frames = torch.as_tensor(ClipDataset(dataset_root)[0]["frames"])
    video = frames[:5, :16, :16].permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    assert block_pca.encode(pca, video).shape == (1, TINY_VAE["z_dim"], 2, 2, 2)
    for bad in (dict(pca_weight=-1.0), dict(pca_decoder_weight=-1.0),
                dict(pca_weight=1.0, decoder_only=True, init="x.safetensors")):
        with pytest.raises(ValueError, match="pca-weight"):
            train_vae(_vae_cfg(dataset_root, tmp_path / "bad", **bad))
    assert train_vae(cfg).is_file()
    rows = [json.loads(line) for line in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert [("pca" in r) for r in rows] == [True, True, True, True, False]  # logged while it weighs
    assert [("pca_decoder_psnr" in r) for r in rows] == [True, True, True, True, False]
    assert all(r["pca"] > 0 and 0 < r["pca_decoder_psnr"] < 60 for r in rows[:4])


def test_vae_pca_guide_alone_moves_the_encoder_towards_the_coefficients(dataset_root, tmp_path):  # noqa: F811
    from diffusers import AutoencoderKLWan

    from iasa_core.bench import block_pca
    from iasa_core.model.vae_codec import encode_moments
    from training.data import ClipDataset
    from training.train_vae import fit_pca_guide, load_vae, pca_guide_loss, train_vae, zero_init_residuals

    # Pixel losses off: the encoder learns from the guide alone, and its distance to the target falls.
    cfg = _vae_cfg(dataset_root, tmp_path / "only", pca_weight=1.0, mse_weight=0.0, l1_weight=0.0, kl_weight=0.0,
                   steps=100, batch=4, crop=32, lr=1e-2, warmup_steps=5, long_every=0, save_every=1000)
    guide = fit_pca_guide(ClipDataset(dataset_root), cfg)
    frames = torch.as_tensor(ClipDataset(dataset_root)[0]["frames"])
    video = frames[:9, :32, :32].permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
    target = block_pca.encode(guide[0], video) / guide[1]
    assert float(pca_guide_loss(guide, target, video)) < 1e-10
    assert float(pca_guide_loss(guide, torch.zeros_like(target), video)) == pytest.approx(float(target.pow(2).mean()))

    def distance(vae):
        with torch.no_grad():
            return float(pca_guide_loss(guide, encode_moments(vae, video).chunk(2, dim=1)[0], video))

    fresh = AutoencoderKLWan(**TINY_VAE)
    zero_init_residuals(fresh)
    # Without any loss the weights would not move; the guide alone moves them its way (this 4-channel VAE is too
    # narrow to learn the projection itself in 100 steps, so the bound is loose).
    assert distance(load_vae(train_vae(cfg))[0]) < 0.9 * distance(fresh)
