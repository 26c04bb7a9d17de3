"""Growing a trained model keeps its outputs: wider pose encoders and per-block pose maps (training.widen_pose),
more DiT blocks (training.deepen)."""

from __future__ import annotations

import pytest
import torch

from iasa_core.model.checkpoint import load_student, save_student
from iasa_core.model.presets import get_preset
from iasa_core.model.system import PoseWanSystem
from training import deepen as D
from training.widen_pose import main, widen_pose_encoders

T, H, W = 9, 64, 96


def _inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    from iasa_core.model.pose_wan import Condition

    f, h, w = (T - 1) // 4 + 1, H // 8, W // 8
    cond = Condition(torch.randn(1, 20, f, h, w, generator=g), torch.randn(1, 512, 16, generator=g),
                     torch.randn(1, 5, 16, generator=g))
    return (torch.randn(1, 16, f, h, w, generator=g), cond, torch.rand(1, 3, T, H, W, generator=g) * 255,
            torch.rand(1, 3, H, W, generator=g) * 255)


def _denoise(denoiser, inputs):
    latents, cond, pose_video, ref_pose = inputs
    with torch.no_grad():
        return denoiser(latents, torch.tensor([500.0]), cond, denoiser.encode_poses(pose_video, ref_pose))


def test_widened_model_computes_the_same_and_gains_channels():
    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    # Make the old weights non-trivial everywhere so a dropped copy would show.
    with torch.no_grad():
        for p in system.denoiser.pose_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    inputs = _inputs()
    wide = widen_pose_encoders(system.denoiser, 24).eval()
    assert wide.config.pose_hidden == 24 and system.denoiser.config.pose_hidden == 16
    assert wide.pose_encoder.convs[0].weight.shape[0] == 24 and wide.ref_pose_encoder.convs[1].weight.shape[:2] == (24, 24)
    before, after = _denoise(system.denoiser, inputs), _denoise(wide, inputs)
    assert (after - before).abs().max() < 1e-5 * before.abs().max()
    # The new channels are live (random inputs) and silent towards the old ones (zero outputs).
    assert wide.pose_encoder.convs[1].weight[16:].abs().sum() > 0
    assert wide.pose_encoder.convs[1].weight[:16, 16:].abs().sum() == 0
    assert wide.pose_encoder.convs[-1].weight[:, 16:].abs().sum() == 0
    # One step of training on the widened pose path moves the output (the width is usable).
    loss = wide(inputs[0], torch.tensor([500.0]), inputs[1], wide.encode_poses(inputs[2], inputs[3])).square().mean()
    loss.backward()
    assert wide.pose_encoder.convs[-1].weight.grad[:, 16:].abs().sum() > 0


def test_widen_cli_round_trip_and_refuses_narrowing(tmp_path, capsys):
    system = PoseWanSystem.random(get_preset("tiny"), seed=2)
    src = save_student(system, tmp_path / "model.safetensors")
    assert main(["--model", str(src), "--hidden", "20", "--out", str(tmp_path / "wide.safetensors")]) == 0
    assert "widened from 16 to 20" in capsys.readouterr().out
    wide = load_student(tmp_path / "wide.safetensors")
    assert wide.config.pose_hidden == 20
    inputs = _inputs(3)
    before, after = _denoise(system.denoiser, inputs), _denoise(wide.denoiser, inputs)
    assert (after - before).abs().max() < 1e-5 * before.abs().max()
    assert torch.equal(wide.vae.decoder.conv_out.weight, system.vae.decoder.conv_out.weight)
    with pytest.raises(ValueError, match="widening only"):
        widen_pose_encoders(system.denoiser, 8)


def test_deepened_model_computes_the_same_and_its_new_blocks_learn(tmp_path, capsys):
    assert D.block_sources(6, 8) == [0, 1, None, 2, 3, None, 4, 5]
    assert D.block_sources(2, 5) == [0, None, None, None, 1]
    system = PoseWanSystem.random(get_preset("tiny"), seed=4)
    with torch.no_grad():  # trained-looking weights everywhere, so a block dropped or misplaced would show
        for p in system.denoiser.transformer.blocks.parameters():
            p.add_(0.05 * torch.randn_like(p))
    inputs = _inputs(5)
    deep = D.deepen(system.denoiser, 4).eval()
    assert deep.config.transformer["num_layers"] == 4 and len(deep.transformer.blocks) == 4
    assert system.denoiser.config.transformer["num_layers"] == 2
    before, after = _denoise(system.denoiser, inputs), _denoise(deep, inputs)
    assert torch.equal(before, after)  # an inserted block adds exact zeros to the residual stream
    assert D.block_sources(2, 4) == [0, None, None, 1]
    new = [1, 2]
    assert all(deep.transformer.blocks[j].ffn.net[2].weight.abs().sum() == 0 for j in new)
    assert torch.equal(deep.transformer.blocks[new[-1]].attn1.to_q.weight,
                       system.denoiser.transformer.blocks[0].attn1.to_q.weight)  # a copy of the block before
    latents, cond, pose_video, ref_pose = inputs
    loss = deep(latents, torch.tensor([500.0]), cond, deep.encode_poses(pose_video, ref_pose)).square().mean()
    loss.backward()
    assert all(deep.transformer.blocks[j].attn1.to_out[0].weight.grad.abs().sum() > 0 for j in new)
    # CLI round trip: the file keeps everything but gains blocks
    src = save_student(system, tmp_path / "model.safetensors")
    assert D.main(["--model", str(src), "--layers", "3", "--out", str(tmp_path / "deep.safetensors")]) == 0
    assert "deepened from 2 to 3 blocks" in capsys.readouterr().out
    loaded = load_student(tmp_path / "deep.safetensors")
    assert loaded.config.transformer["num_layers"] == 3
    assert torch.equal(_denoise(loaded.denoiser, inputs), before)
    assert torch.equal(loaded.vae.decoder.conv_out.weight, system.vae.decoder.conv_out.weight)
    with pytest.raises(ValueError, match="deepening only"):
        D.deepen(system.denoiser, 1)


def _with_pose_blocks(seed: int):
    system = PoseWanSystem.random(get_preset("tiny"), seed=seed)
    with torch.no_grad():
        for p in system.denoiser.pose_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return system, widen_pose_encoders(system.denoiser, blocks=True).eval()


def test_pose_blocks_start_silent_and_then_feed_the_pose_to_each_block():
    from iasa_core.model.pose_wan import drop_pose

    system, posed = _with_pose_blocks(6)
    assert posed.config.pose_blocks and len(posed.block_pose_proj) == 2
    assert posed.config.pose_hidden == system.denoiser.config.pose_hidden
    inputs = _inputs(7)
    assert torch.equal(_denoise(system.denoiser, inputs), _denoise(posed, inputs))  # zero maps add exact zeros
    # Block 0's map set to the identity: block 0 then sees the pose tokens twice, which is the plain model
    # given twice the pose features (nothing runs between the patch embedding and block 0).
    latents, cond, pose_video, ref_pose = inputs
    with torch.no_grad():
        posed.block_pose_proj[0].weight.copy_(torch.eye(posed.config.dim))
        feats = posed.encode_poses(pose_video, ref_pose)
        doubled = type(feats)(2 * feats.video, feats.ref)
        got = posed(latents, torch.tensor([500.0]), cond, feats)
        want = system.denoiser(latents, torch.tensor([500.0]), cond, doubled)
        assert (got - want).abs().max() < 1e-5 * want.abs().max()
        assert (got - _denoise(system.denoiser, inputs)).abs().max() > 1e-3  # and the map matters
        # A dropped pose (zero features) is no pose at all: the maps have no bias.
        dropped = drop_pose(feats, torch.zeros(1))
        plain = system.denoiser(latents, torch.tensor([500.0]), cond, None)
        assert torch.equal(posed(latents, torch.tensor([500.0]), cond, None), plain)
        assert torch.equal(posed(latents, torch.tensor([500.0]), cond, dropped), plain)
    # Gradients reach every block's map from its zero start.
    with torch.no_grad():
        posed.block_pose_proj[0].weight.zero_()
    out = posed(latents, torch.tensor([500.0]), cond, posed.encode_poses(pose_video, ref_pose))
    out.square().mean().backward()
    assert all(p.weight.grad.abs().sum() > 0 for p in posed.block_pose_proj)
    # A block handed tokens of another length says so instead of broadcasting (not reachable through forward,
    # whose patch-embedding check comes first; guarded for callers that run the blocks themselves).
    dim = posed.config.dim
    with posed._pose_added(torch.zeros(1, dim, 1, 2, 2)), pytest.raises(ValueError, match="block 1's input"):
        posed._add_block_pose(1, posed.transformer.blocks[1], (torch.zeros(1, 5, dim),))


def test_pose_blocks_survive_save_load_deepen_and_the_cli(tmp_path, capsys):
    system, posed = _with_pose_blocks(8)
    with torch.no_grad():
        for i, proj in enumerate(posed.block_pose_proj):
            proj.weight.normal_(0.0, 0.02 * (i + 1))
    inputs = _inputs(9)
    reference = _denoise(posed, inputs)
    # Plain configs keep their old metadata (no pose_blocks key), so older readers still load them.
    assert "pose_blocks" not in system.config.to_dict() and posed.config.to_dict()["pose_blocks"] is True
    system.denoiser = posed
    system.config = posed.config
    path = save_student(system, tmp_path / "posed.safetensors")
    loaded = load_student(path)
    assert loaded.config.pose_blocks and torch.equal(_denoise(loaded.denoiser, inputs), reference)
    # Deepening moves each map with its block and gives inserted blocks zero maps.
    deep = D.deepen(posed, 4).eval()
    assert torch.equal(deep.block_pose_proj[3].weight, posed.block_pose_proj[1].weight)
    assert all(deep.block_pose_proj[j].weight.abs().sum() == 0 for j in (1, 2))
    assert torch.equal(_denoise(deep, inputs), reference)
    # The CLI adds the maps without touching the width; with neither option it refuses.
    plain = PoseWanSystem.random(get_preset("tiny"), seed=10)
    src = save_student(plain, tmp_path / "plain.safetensors")
    assert main(["--model", str(src), "--blocks", "--out", str(tmp_path / "pb.safetensors")]) == 0
    assert "pose maps into every block added" in capsys.readouterr().out
    pb = load_student(tmp_path / "pb.safetensors")
    assert pb.config.pose_blocks and pb.config.pose_hidden == plain.config.pose_hidden
    assert torch.equal(_denoise(pb.denoiser, inputs), _denoise(plain.denoiser, inputs))
    with pytest.raises(SystemExit):
        main(["--model", str(src), "--out", str(tmp_path / "none.safetensors")])
    assert "give --hidden N, --blocks or both" in capsys.readouterr().err


def test_pose_lr_scale_groups_and_the_checkpointing_guard():
    from training.config import ConfigError, OptimConfig
    from training.model_setup import enable_checkpointing, make_optimizer, param_groups

    _, posed = _with_pose_blocks(11)
    params = list(posed.parameters())
    assert len(param_groups(params, OptimConfig(lr=1e-3))) == 1
    opt, sched = make_optimizer(params, OptimConfig(lr=1e-3, pose_lr_scale=10.0, warmup_steps=2), 10, posed)
    rest, pose = opt.param_groups
    pose_ids = {id(p) for m in (posed.pose_encoder, posed.ref_pose_encoder, posed.block_pose_proj)
                for p in m.parameters()}
    assert {id(p) for p in pose["params"]} == pose_ids and not pose_ids & {id(p) for p in rest["params"]}
    assert len(rest["params"]) + len(pose["params"]) == len(params)
    assert pose["lr"] == pytest.approx(10 * rest["lr"]) and rest["lr"] == pytest.approx(0.5e-3)  # warm-up
    opt.step()
    sched.step()
    assert pose["lr"] == pytest.approx(10 * rest["lr"]) and rest["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="needs the denoiser"):
        param_groups(params, OptimConfig(pose_lr_scale=2.0))
    with pytest.raises(ConfigError, match="pose_lr_scale must be > 0"):
        OptimConfig(pose_lr_scale=0.0)
    with pytest.raises(ValueError, match="gradient_checkpointing cannot be used"):
        enable_checkpointing(posed, True)
    enable_checkpointing(posed, False)
