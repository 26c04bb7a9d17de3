"""Training: configs, LoRA, objectives (DMD by hand), teacher fine-tune, distillation, resume, export, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from iasa_core.audio import AudioClip
from iasa_core.media import write_video
from iasa_core.pose.render import render_poses
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from training.config import ConfigError, DistillConfig, TeacherConfig, apply_overrides, from_dict, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, FRAMES = 64, 9


# ---------------------------------------------------------------------- a tiny dataset, prepared here


def _make_videos(folder, count: int, seconds: float = 0.8, size: int = 96):
    """Synthetic talking videos with audio and their keypoint files (no detector, no downloads)."""
    videos, kps = folder / "videos", folder / "keypoints"
    videos.mkdir(parents=True)
    kps.mkdir(parents=True)
    n = int(round(seconds * 25))
    for i in range(count):
        kp = synthetic_keypoints(n, size, size, seed=i)
        kp[..., 2] = np.where(kp[..., 2] > 0, 0.95, 0.0)  # confident, as DWPose is on clean footage
        frames = render_poses(kp, size, size)
        t = np.arange(int(seconds * 16000)) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
        write_video(videos / f"talk{i}.mp4", frames, 25.0, audio=AudioClip(wave[None], 16000, "test"))
        PoseSequence(kp, size, size, 25.0).save_json(kps / f"talk{i}.json")
    return videos, kps


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    from training.data.options import PrepareOptions
    from training.data.pipeline import prepare_dataset

    base = tmp_path_factory.mktemp("data")
    videos, kps = _make_videos(base, 2)
    out = base / "dataset"
    report = prepare_dataset(videos, out, PrepareOptions(height=SIZE, width=SIZE, frames=FRAMES,
                                                         max_clips_per_video=1),
                             keypoints_dir=kps, progress=False)
    assert report["clips"] == 2, report
    return out


def _teacher_cfg(root, out, **run) -> TeacherConfig:
    data = {"model": {"spec": "tiny"}, "data": {"root": str(root)}, "lora": {"rank": 4},
            "optim": {"lr": 1e-3}, "sparse": {"settings": {"block_size": 16}},
            "run": {"output_dir": str(out), "steps": 2, "log_every": 1, "save_every": 100, "tensorboard": False,
                    **run}}
    return from_dict(TeacherConfig, data)


def _distill_cfg(teacher, root, out, region: dict | None = None, **run) -> DistillConfig:
    data = {"teacher": {"spec": str(teacher)}, "data": {"root": str(root)}, "lora": {"rank": 4},
            "sparse": {"settings": {"block_size": 16}},
            "dmd": {"generator_every": 2, "guidance": 3.0,
                    "generator_optim": {"lr": 1e-4, "betas": [0.0, 0.999]},
                    "critic_optim": {"lr": 1e-3, "betas": [0.0, 0.999]}},
            "region": region or {"weight": 0.5, "frames": 2},
            "run": {"output_dir": str(out), "steps": 2, "log_every": 1, "save_every": 100, "tensorboard": False,
                    **run}}
    return from_dict(DistillConfig, data)


@pytest.fixture(scope="module")
def teacher_file(dataset_root, tmp_path_factory):
    from training.finetune_teacher import train_teacher

    out = tmp_path_factory.mktemp("teacher")
    result = train_teacher(_teacher_cfg(dataset_root, out, steps=2))
    return result["exported"]["model"]


# ---------------------------------------------------------------------- config


def test_config_reads_yaml_with_overrides_and_names_bad_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  steps: 7\n  precision: bf16\nlora:\n  rank: 0\n")
    cfg = load_config(TeacherConfig, str(path), ["run.steps=9", "optim.lr=0.5", "sparse.settings.top_k=3"])
    assert cfg.run.steps == 9 and cfg.run.precision == "bf16" and cfg.lora.rank == 0
    assert cfg.optim.lr == 0.5 and cfg.sparse.settings == {"top_k": 3}
    assert cfg.dmd if hasattr(cfg, "dmd") else True
    with pytest.raises(ConfigError, match=r"run: unknown key\(s\) \['stpes'\]"):
        from_dict(TeacherConfig, {"run": {"stpes": 3}})
    with pytest.raises(ConfigError, match=r"run.steps: expected int, got 'many'"):
        from_dict(TeacherConfig, {"run": {"steps": "many"}})
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TeacherConfig, str(tmp_path / "none.yaml"))
    d = from_dict(DistillConfig, {"dmd": {"generator_optim": {"lr": 1}}})
    assert d.dmd.generator_optim.lr == 1.0 and d.dmd.critic_optim.lr == pytest.approx(4e-7)


def test_shipped_configs_parse():
    folder = os.path.join(ROOT, "training", "configs")
    names = sorted(os.listdir(folder))
    assert names, "training/configs is empty"
    for name in names:
        cls = DistillConfig if name.startswith("distill") else TeacherConfig
        cfg = load_config(cls, os.path.join(folder, name))
        if name == "teacher_embedded_widen.yaml":  # the face-points stage of the embedded teacher
            assert cfg.model.pose_face is True and cfg.sparse.settings["background"] is True
        if name == "teacher_embedded_res.yaml":  # the teacher on the residual VAE: three worlds, face and mouth
            assert cfg.model.pose_face is True and cfg.model.pose_mouth is True and len(cfg.data.more_roots) == 2


# ---------------------------------------------------------------------- LoRA


def test_lora_merge_and_community_file_match_the_adapted_model(tmp_path):
    from iasa_core.model.loading import load_model
    from iasa_core.model.presets import get_preset
    from iasa_core.model.system import PoseWanSystem
    from training.lora import add_lora, lora_layers, merge_lora_layers, save_lora

    system = PoseWanSystem.random(get_preset("tiny"), seed=3)
    transformer = system.denoiser.transformer
    wrapped = add_lora(transformer, rank=3, alpha=6.0)
    assert len(wrapped) == 2 * (2 * 4 + 2)  # 2 blocks x (q,k,v,o in attn1 and attn2 + two ffn layers)
    for layer in lora_layers(transformer).values():
        torch.nn.init.normal_(layer.lora_up.weight, std=0.2)
    x = torch.randn(5, transformer.blocks[0].attn1.to_q.base.in_features)
    layer = transformer.blocks[0].attn1.to_q
    adapted = layer(x)
    want = layer.base(x) + 2.0 * x @ layer.lora_down.weight.T @ layer.lora_up.weight.T
    assert torch.allclose(adapted, want, atol=1e-6)
    assert torch.allclose(layer.merged()(x), adapted, atol=1e-5)

    lora_file = save_lora(transformer, tmp_path / "lora.safetensors")
    from safetensors.torch import load_file

    keys = set(load_file(str(lora_file)))
    assert "diffusion_model.blocks.0.self_attn.q.lora_down.weight" in keys
    assert "diffusion_model.blocks.1.ffn.2.alpha" in keys and "diffusion_model.blocks.0.cross_attn.o.lora_up.weight" in keys
    merged_state = {k: v.clone() for k, v in transformer.state_dict().items()}
    merge_lora_layers(transformer)
    assert not lora_layers(transformer)
    # Our loader (and ComfyUI's) applies the saved file to the base model: the same weights as merging here.
    base = load_model("tiny", seed=3, loras=[(str(lora_file), 1.0)]).denoiser.transformer.state_dict()
    ours = transformer.state_dict()
    assert max((base[k] - ours[k]).abs().max().item() for k in ours) < 1e-5
    assert set(ours) == {k.replace(".base.", ".") for k in merged_state if ".lora_" not in k}


# ---------------------------------------------------------------------- objectives


def test_dmd_gradient_matches_a_hand_computed_value():
    from training.objectives import dmd_gradient, dmd_loss

    x = torch.tensor([[1.0, 2.0, -1.0, 0.0]], requires_grad=True)
    real = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    fake = torch.tensor([[1.0, -1.0, 0.5, 2.0]])
    # mean |x - real| = (1 + 2 + 1 + 0) / 4 = 1; grad = (fake - real) / 1.
    assert torch.equal(dmd_gradient(x, real, fake), fake)
    loss = dmd_loss(x, real, fake)
    assert loss.item() == pytest.approx(0.5 * (1 + 1 + 0.25 + 4) / 4)
    loss.backward()
    # d/dx 0.5 * mean((x - stopgrad(x - g))^2) = g / numel
    assert torch.allclose(x.grad, fake / 4)

    # Per-sample normalisers: the second sample is twice as far from the real prediction.
    x2 = torch.tensor([[1.0, -1.0], [2.0, -2.0]], requires_grad=True)
    g = dmd_gradient(x2, torch.zeros(2, 2), torch.ones(2, 2))
    assert torch.allclose(g, torch.tensor([[1.0, 1.0], [0.5, 0.5]]))


def test_dmd_step_moves_a_toy_generator_towards_the_real_distribution():
    # Real data ~ N(3, 1), generator output ~ N(theta, 1): with exact scores the x0 predictions at noise level s
    # are the posterior means, and one DMD step must move theta towards 3.
    from training.objectives import add_noise, dmd_loss

    torch.manual_seed(0)
    theta = torch.zeros(1, requires_grad=True)
    z = torch.randn(4096, 1)
    x = theta + z
    s = 0.5
    x_t = add_noise(x.detach(), torch.randn_like(x), s)

    def posterior_mean(mu):  # E[x0 | x_t] for x0 ~ N(mu, 1), x_t = (1-s) x0 + s n
        var = (1 - s) ** 2 + s ** 2
        return mu + (1 - s) / var * (x_t - (1 - s) * mu)

    dmd_loss(x, posterior_mean(torch.tensor(3.0)), posterior_mean(theta.detach())).backward()
    assert theta.grad.item() < 0  # gradient descent raises theta towards 3


def test_flow_objective_and_noise_levels():
    from iasa_core.sampling.schedules import shift_sigma
    from training.objectives import add_noise, flow_matching_loss, sample_sigma, x0_from_flow

    u = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(sample_sigma(u, 5.0, 0.02, 0.98), shift_sigma(torch.tensor([0.02, 0.5, 0.98]), 5.0).float())
    x0, noise = torch.randn(2, 3), torch.randn(2, 3)
    x_t = add_noise(x0, noise, torch.tensor([0.25, 0.75]))
    assert torch.allclose(x_t[1], 0.25 * x0[1] + 0.75 * noise[1])
    assert torch.allclose(x0_from_flow(x_t, noise - x0, torch.tensor([0.25, 0.75])), x0, atol=1e-6)
    assert flow_matching_loss(noise - x0, noise, x0).item() == 0.0


def test_region_weighted_flow_loss_favours_face_and_hand_cells():
    from iasa_core.pose.layout import REGION_FACE, REGION_HANDS
    from training.config import ConfigError, FlowConfig
    from training.objectives import flow_matching_loss, latent_region_weights

    labels = torch.zeros(9, 16, 16, dtype=torch.uint8)  # 9 frames -> 3 latent frames of 2x2 cells (8x8 pixels)
    labels[0, :8, :8] = REGION_FACE                      # latent frame 0: the whole top-left cell
    labels[6, 8:, 8:12] = REGION_HANDS                   # latent frame 2 (frames 5..8): half the cell, one frame
    w = latent_region_weights(labels, (1, 4, 3, 2, 2), {REGION_FACE: 10.0, REGION_HANDS: 4.0})
    assert w.shape == (1, 1, 3, 2, 2)
    expected = torch.ones(3, 2, 2)
    expected[0, 0, 0] = 11.0
    expected[2, 1, 1] = 1.0 + 4.0 * 0.5  # the most of the 4 frames: a hand once counts
    assert torch.equal(w[0, 0], expected)
    pred, noise, x0 = torch.randn(1, 4, 3, 2, 2), torch.randn(1, 4, 3, 2, 2), torch.randn(1, 4, 3, 2, 2)
    assert torch.allclose(flow_matching_loss(pred, noise, x0, torch.ones_like(w)), flow_matching_loss(pred, noise, x0))
    err = (pred - (noise - x0)) ** 2
    assert torch.allclose(flow_matching_loss(pred, noise, x0, w), (err * w).sum() / (w.expand_as(err).sum()))
    with pytest.raises(ValueError, match="do not fit latents"):
        latent_region_weights(labels[:8], (1, 4, 3, 2, 2), {REGION_FACE: 1.0})
    with pytest.raises(ConfigError, match="face_weight"):
        FlowConfig(face_weight=-1.0)
    with pytest.raises(ConfigError, match="mouth_weight"):
        FlowConfig(mouth_weight=-1.0)
    # extra pixel masks (the lips' boxes) add their share the same way
    from training.objectives import box_masks
    boxes = box_masks(np.array([[0, 0, 4, 8]] * 9), 16, 16)  # x 0..3, y 0..7 of every frame
    assert boxes.shape == (9, 16, 16) and int(boxes[0].sum()) == 32 and bool(boxes[3, 7, 3]) and not boxes[3, 8, 3]
    w2 = latent_region_weights(torch.zeros_like(labels), (1, 4, 3, 2, 2), {}, masks=[(boxes, 8.0)])
    assert torch.equal(w2[0, 0, :, 0, 0], torch.full((3,), 1.0 + 8.0 * 0.5)) and float(w2[0, 0, :, 1, 1].max()) == 1.0
    with pytest.raises(ValueError, match="does not match the labels"):
        latent_region_weights(labels, (1, 4, 3, 2, 2), {}, masks=[(boxes[:, :8], 1.0)])


# ---------------------------------------------------------------------- teacher fine-tune


def test_finetune_teacher_cli_runs_logs_and_exports(dataset_root, tmp_path):
    from iasa_core.model.loading import load_model
    from training import finetune_teacher

    cfg_path = tmp_path / "teacher.yaml"
    cfg_path.write_text(f"model: {{spec: tiny}}\ndata: {{root: {dataset_root}}}\nlora: {{rank: 4}}\n"
                        "sparse: {settings: {block_size: 16}}\n")
    out = tmp_path / "run"
    code = finetune_teacher.main(["--config", str(cfg_path), "--set", f"run.output_dir={out}", "--set", "run.steps=3",
                                  "--set", "run.log_every=1", "--set", "run.gradient_checkpointing=true",
                                  "--set", "model.pose_face=true", "--set", "model.pose_mouth=true",
                                  "--set", "flow.face_weight=4"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(np.isfinite(r["train/loss"]) for r in rows)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "checkpoints" / "step-0000003" / "state.json").is_file()
    system = load_model(str(out / "teacher.safetensors"))
    assert system.schedule["kind"] == "teacher" and system.sparse["block_size"] == 16
    assert system.schedule["pose_face"] is True and system.pose_style().face  # trained with face points: drawn
    assert system.schedule["pose_mouth"] is True and system.pose_style().mouth
    assert (out / "teacher_lora.safetensors").is_file()

    bad = tmp_path / "bad.yaml"
    bad.write_text("run: {stpes: 3}\n")
    assert finetune_teacher.main(["--config", str(bad)]) == 2


def _fixed_teacher_loss(system, model, sample, cfg):
    from training.finetune_teacher import teacher_loss

    losses = [teacher_loss(model, sample, torch.Generator().manual_seed(100 + i), cfg, system.device,
                           backward=False)["loss"] for i in range(4)]
    return float(np.mean(losses))


def test_teacher_loss_falls_on_a_fixed_batch(dataset_root, tmp_path):
    from training.batch import PosedDenoiser, prepare_sample
    from training.finetune_teacher import teacher_loss
    from training.model_setup import (
        load_system,
        make_optimizer,
        make_trainable,
        open_dataset,
        sparse_settings,
    )

    cfg = _teacher_cfg(dataset_root, tmp_path, steps=1)
    cfg.flow.pose_dropout = cfg.flow.image_dropout = 0.0
    system = load_system(cfg.model, torch.device("cpu"))
    params = make_trainable(system.denoiser, cfg.lora)
    model = PosedDenoiser(system.denoiser)
    opt, _ = make_optimizer(params, cfg.optim)
    sample = prepare_sample(system, open_dataset(cfg.data.root)[0], sparse=sparse_settings(system, cfg.sparse))
    before = _fixed_teacher_loss(system, model, sample, cfg)
    for i in range(12):
        teacher_loss(model, sample, torch.Generator().manual_seed(100 + i % 4), cfg, system.device)
        opt.step()
        opt.zero_grad()
    after = _fixed_teacher_loss(system, model, sample, cfg)
    assert after < 0.9 * before, (before, after)

    from training.finetune_teacher import region_weights
    assert region_weights(sample, sample.latents.shape, cfg) is None  # the plain objective by default
    cfg.flow.face_weight, cfg.flow.hands_weight = 10.0, 5.0
    w = region_weights(sample, sample.latents.shape, cfg)
    assert w.shape == (1, 1, *sample.latents.shape[2:]) and w.min() == 1.0 and w.max() > 2.0
    assert _fixed_teacher_loss(system, model, sample, cfg) != pytest.approx(after, rel=1e-4)  # the weights act
    cfg.flow.mouth_weight = 20.0
    assert float(region_weights(sample, sample.latents.shape, cfg).max()) > float(w.max())


def test_resumed_teacher_run_continues_with_the_same_state(dataset_root, tmp_path):
    from safetensors.torch import load_file

    from training.finetune_teacher import train_teacher

    straight = train_teacher(_teacher_cfg(dataset_root, tmp_path / "a", steps=4, save_every=2))
    first = train_teacher(_teacher_cfg(dataset_root, tmp_path / "b", steps=2, save_every=2))
    again = _teacher_cfg(dataset_root, tmp_path / "b", steps=4, save_every=2)
    again.data.num_workers = 1  # clips read ahead by a loader process: the same clips in the same order
    resumed = train_teacher(again)
    assert resumed["start"] == 2
    assert first["losses"] + resumed["losses"] == straight["losses"]
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000004" / "weights.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000004" / "weights.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    oa = torch.load(tmp_path / "a" / "checkpoints" / "step-0000004" / "optimizers.pt", weights_only=True)
    ob = torch.load(tmp_path / "b" / "checkpoints" / "step-0000004" / "optimizers.pt", weights_only=True)
    sa, sb = oa["opt"]["state"], ob["opt"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)

    with pytest.raises(ConfigError, match="another lora section"):
        changed = _teacher_cfg(dataset_root, tmp_path / "b", steps=6)
        changed.lora.rank = 8
        train_teacher(changed)


def test_more_roots_join_the_clips_of_datasets_of_one_shape(dataset_root, tmp_path):
    import json
    import shutil

    from training.data.dataset import DatasetError
    from training.model_setup import open_dataset

    one = open_dataset(str(dataset_root))
    both = open_dataset(str(dataset_root), [str(dataset_root)])
    assert len(both) == 2 * len(one)
    assert torch.equal(torch.as_tensor(both[len(one)]["frames"]), torch.as_tensor(one[0]["frames"]))
    other = tmp_path / "other"
    shutil.copytree(dataset_root, other)
    meta = json.loads((other / "dataset.json").read_text())
    meta["content"]["height"] = 2 * meta["content"]["height"]
    (other / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"data.more_roots: .*other holds clips of .*same --size"):
        open_dataset(str(dataset_root), [str(other)])


def test_teacher_run_trains_the_per_block_pose_maps_at_their_own_rate(dataset_root, tmp_path):
    from iasa_core.model.checkpoint import load_student, save_student
    from iasa_core.model.presets import get_preset
    from iasa_core.model.system import PoseWanSystem
    from training.finetune_teacher import train_teacher
    from training.widen_pose import main as widen_main

    plain = save_student(PoseWanSystem.random(get_preset("tiny"), seed=0), tmp_path / "plain.safetensors")
    assert widen_main(["--model", str(plain), "--blocks", "--out", str(tmp_path / "pb.safetensors")]) == 0
    cfg = _teacher_cfg(dataset_root, tmp_path / "run", steps=2)
    cfg.model.spec = str(tmp_path / "pb.safetensors")
    cfg.optim.pose_lr_scale = 5.0  # with LoRA the pose modules train in full: the maps too
    result = train_teacher(cfg)
    out = load_student(result["exported"]["model"])
    assert out.config.pose_blocks
    assert all(p.weight.abs().sum() > 0 for p in out.denoiser.block_pose_proj)
    opt = torch.load(tmp_path / "run" / "checkpoints" / "step-0000002" / "optimizers.pt", weights_only=True)
    lrs = sorted(g["lr"] for g in opt["opt"]["param_groups"])
    assert len(lrs) == 2 and lrs[1] == pytest.approx(5 * lrs[0])


# ---------------------------------------------------------------------- distillation


def test_distill_runs_with_region_loss_and_exports_a_student_that_samples(dataset_root, teacher_file, tmp_path):
    from iasa_core.model.loading import load_model
    from iasa_core.pipeline import GenerateOptions, generate_video
    from training.distill import train_student

    cfg = _distill_cfg(teacher_file, dataset_root, tmp_path / "d", steps=3)
    cfg.teacher.pose_face = True  # the student keeps its teacher's pose drawing
    result = train_student(cfg)
    rows = [json.loads(line) for line in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"gen/dmd", "gen/region", "critic/loss"} <= set(rows[0])
    assert [r["gen/step"] for r in rows] == [1, 1, 3]  # generator numbers from its latest update
    assert all(np.isfinite(v) for r in rows for v in r.values())
    assert rows[0]["gen/region"] > 0
    student = load_model(result["exported"])
    assert student.schedule == {"kind": "student", "timesteps": [1000, 750, 500, 250], "shift": 5.0,
                                "pose_face": True}
    kp = synthetic_keypoints(9, SIZE, SIZE, seed=5)
    image = render_poses(kp[:1], SIZE, SIZE)[0]
    out = generate_video(student, image, PoseSequence(kp, SIZE, SIZE), GenerateOptions(seed=1))
    assert out.frames.shape == (9, SIZE, SIZE, 3) and out.denoiser_calls == 4


def test_critic_loss_falls_on_a_fixed_batch(dataset_root, teacher_file, tmp_path):
    from training.batch import PosedDenoiser, prepare_sample
    from training.distill import critic_loss, student_rollout
    from training.model_setup import (
        load_system,
        make_optimizer,
        make_trainable,
        open_dataset,
        sparse_settings,
    )

    cfg = _distill_cfg(teacher_file, dataset_root, tmp_path)
    system = load_system(cfg.teacher, torch.device("cpu"))
    sample = prepare_sample(system, open_dataset(cfg.data.root)[0], sparse=sparse_settings(system, cfg.sparse))
    from iasa_core.sampling.schedules import student_sigmas

    with torch.no_grad():
        x0 = student_rollout(PosedDenoiser(system.denoiser), sample, student_sigmas(), 3,
                             torch.Generator().manual_seed(0), cfg, system.device, grad=False)
    cfg.lora.rank = 0  # a full critic: the tiny model's LoRA has too few weights to fit a batch in a few steps
    params = make_trainable(system.denoiser, cfg.lora)
    critic = PosedDenoiser(system.denoiser)
    cfg.dmd.critic_optim.lr = 1e-3
    opt, _ = make_optimizer(params, cfg.dmd.critic_optim)

    def fixed():
        with torch.no_grad():
            return float(np.mean([critic_loss(critic, sample, x0, torch.Generator().manual_seed(50 + i), cfg,
                                              system.device) for i in range(4)]))

    before = fixed()
    for i in range(12):
        critic_loss(critic, sample, x0, torch.Generator().manual_seed(50 + i % 4), cfg, system.device).backward()
        opt.step()
        opt.zero_grad()
    after = fixed()
    assert after < 0.9 * before, (before, after)


def test_resumed_distillation_continues_with_the_same_state(dataset_root, teacher_file, tmp_path):
    from safetensors.torch import load_file

    from training.distill import train_student

    region = {"weight": 0.0}
    straight = train_student(_distill_cfg(teacher_file, dataset_root, tmp_path / "a", region, steps=4, save_every=2))
    train_student(_distill_cfg(teacher_file, dataset_root, tmp_path / "b", region, steps=2, save_every=2))
    resumed = train_student(_distill_cfg(teacher_file, dataset_root, tmp_path / "b", region, steps=4, save_every=2))
    assert resumed["start"] == 2 and resumed["history"]["critic"] == straight["history"]["critic"][2:]
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000004" / "weights.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000004" / "weights.safetensors"))
    assert any(k.startswith("ema/") for k in a) and any(k.startswith("critic/") for k in a)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_exported_student_loads_in_the_node_and_samples(dataset_root, teacher_file, tmp_path):
    import shutil

    from test_nodes import _import_pack, comfy_image, run, synthetic_pose_keypoint

    from training.distill import train_student

    result = train_student(_distill_cfg(teacher_file, dataset_root, tmp_path / "d", {"weight": 0.0}, steps=1))
    pack = _import_pack()
    bridge = pack.nodes.comfy_bridge
    models = tmp_path / "models"
    (models / "iasa").mkdir(parents=True)
    shutil.copy(result["exported"], models / "iasa" / "my_student.safetensors")
    bridge.set_models_dir(models)
    try:
        nodes = pack.NODE_CLASS_MAPPINGS
        assert "my_student.safetensors" in nodes["IASAModelLoader"].INPUT_TYPES()["required"]["model"][0]
        (model,) = run(nodes["IASAModelLoader"], model="my_student.safetensors", dtype="auto", device="cpu")
        assert model["system"].schedule["kind"] == "student"
        images, fps = run(nodes["IASASampler"], model=model, reference_image=comfy_image(), poses=synthetic_pose_keypoint(9),
                          sampler="auto", steps=30, seed=0, backend="auto", sparse=True)
        assert images.shape[0] == 9 and torch.isfinite(images).all()
    finally:
        bridge.set_models_dir(None)


# ---------------------------------------------------------------------- several processes


_DDP_SCRIPT = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from training.config import TeacherConfig, from_dict
from training.finetune_teacher import train_teacher
cfg = from_dict(TeacherConfig, json.loads({cfg!r}))
r = train_teacher(cfg)
print("LOSSES", json.dumps(r["losses"]))
"""


def test_two_process_ddp_equals_one_process_with_accumulation(dataset_root, tmp_path):
    from dataclasses import asdict

    from safetensors.torch import load_file

    from training.finetune_teacher import train_teacher

    train_teacher(_teacher_cfg(dataset_root, tmp_path / "one", steps=2, grad_accum=2))
    cfg = asdict(_teacher_cfg(dataset_root, tmp_path / "two", steps=2))
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT.format(root=ROOT, cfg=json.dumps(cfg)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "checkpoints" / "step-0000002" / "weights.safetensors"))
    b = load_file(str(tmp_path / "two" / "checkpoints" / "step-0000002" / "weights.safetensors"))
    assert set(a) == set(b)
    # Adam's first steps are about lr * sign(grad): gradients equal up to the order of the all-reduce sums still
    # move a weight whose gradient is ~0 by a fraction of lr (1e-3), so compare at 1e-4.
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert (tmp_path / "two" / "teacher.safetensors").is_file()


# ---------------------------------------------------------------------- memory sharing and precision


def test_distillation_copies_share_the_frozen_base_and_leave_the_teacher_unchanged():
    from training.config import LoraConfig, ModelSpec
    from training.model_setup import frozen_copy, load_system, make_trainable, shared_copy

    system = load_system(ModelSpec(spec="tiny"), torch.device("cpu"))
    teacher = frozen_copy(system.denoiser, share=True)
    critic = shared_copy(system.denoiser, share=True)
    lora = LoraConfig(rank=4, train_pose_encoder=True)
    params = make_trainable(system.denoiser, lora)
    make_trainable(critic, lora)
    q_student = system.denoiser.transformer.blocks[0].attn1.to_q
    assert teacher.transformer.blocks[0].attn1.to_q.weight is q_student.base.weight
    assert critic.transformer.blocks[0].attn1.to_q.base.weight is q_student.base.weight
    assert teacher.pose_encoder.convs[0].weight is not system.denoiser.pose_encoder.convs[0].weight
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.SGD(params, lr=0.1)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    full = shared_copy(system.denoiser, share=False)
    assert full.transformer.blocks[0].attn1.to_q.base.weight is not q_student.base.weight


def test_precision_settings_are_checked():
    with pytest.raises(ConfigError, match="frozen_dtype bf16 needs run.precision bf16"):
        from_dict(TeacherConfig, {"run": {"frozen_dtype": "bf16"}})
    with pytest.raises(ConfigError, match="run.precision must be 'fp32', 'bf16' or 'auto'"):
        from_dict(TeacherConfig, {"run": {"precision": "fp8"}})
    with pytest.raises(ConfigError, match="frozen_dtype bf16 needs run.precision bf16"):
        from_dict(TeacherConfig, {"run": {"precision": "auto", "frozen_dtype": "bf16"}})
    assert from_dict(TeacherConfig, {"run": {"precision": "auto"}}).run.precision == "auto"


def test_embedded_configs_follow_the_cpu():
    # the embedded recipe runs on any CPU: explicit bf16 would be emulated, ~80x slower, where it is not native
    for name in ("teacher_embedded", "teacher_embedded_res", "teacher_embedded_widen", "distill_embedded"):
        cfg = yaml.safe_load((Path(__file__).parents[1] / "training" / "configs" / f"{name}.yaml").read_text())
        assert cfg["run"]["precision"] == "auto", name


def test_bf16_run_with_bf16_frozen_weights_trains(dataset_root, tmp_path):
    from training.finetune_teacher import train_teacher

    cfg = _teacher_cfg(dataset_root, tmp_path, steps=1, precision="bf16", frozen_dtype="bf16",
                       gradient_checkpointing=True)
    result = train_teacher(cfg)
    assert np.isfinite(result["losses"]).all()


def test_the_synthetic_world_prepares_into_a_dataset(tmp_path):
    from iasa_core.synthetic.world import make_world
    from training.data.dataset import ClipDataset
    from training.data.options import PrepareOptions
    from training.data.pipeline import prepare_dataset

    make_world(tmp_path / "world", 2, 0.6, (128, 128), 25.0, 0, engine="synthetic")
    report = prepare_dataset(tmp_path / "world" / "videos", tmp_path / "ds",
                             PrepareOptions(height=64, width=64, frames=9, max_clips_per_video=1),
                             keypoints_dir=tmp_path / "world" / "keypoints", progress=False)
    assert report["clips"] == 2, report
    item = ClipDataset(tmp_path / "ds")[0]
    assert item["frames"].shape == (9, 64, 64, 3) and set(np.unique(item["labels"].numpy())) >= {0, 1, 4}
