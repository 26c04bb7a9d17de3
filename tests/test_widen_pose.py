"""Widening a trained model's pose encoders keeps its outputs (training.widen_pose)."""

from __future__ import annotations

import pytest
import torch

from iasa_core.model.checkpoint import load_student, save_student
from iasa_core.model.presets import get_preset
from iasa_core.model.system import PoseWanSystem
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
