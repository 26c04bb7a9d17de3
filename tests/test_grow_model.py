"""Growing a trained model keeps its outputs: wider pose encoders (training.widen_pose), more DiT blocks
(training.deepen)."""

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
