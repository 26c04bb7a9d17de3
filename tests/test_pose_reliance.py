"""training.pose_reliance: the x0 errors with true, reversed and no poses, checked against a direct computation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iasa_core.bench.quality import heldout_clips
from iasa_core.model.presets import get_preset
from iasa_core.model.system import PoseWanSystem
from training import pose_reliance as R
from training.batch import prepare_sample


@pytest.fixture(scope="module")
def clip():
    c = heldout_clips(1, 9 / 25.0, size=64)[0]
    return c.frames[:9], c.poses.keypoints[:9]


def test_errors_match_a_direct_computation_and_the_variants_differ(clip):
    frames, keypoints = clip
    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    system.denoiser.eval()
    out = R.clip_reliance(system, frames, keypoints, sigmas=(0.6, 1.0))
    assert set(out["mse"]) == {"0.6", "1.0"} and set(out["mse"]["0.6"]) == set(R.VARIANTS)
    assert np.isfinite(out["mean_guess_psnr"])
    # by hand: x_t = 0.4 x0 + 0.6 noise, x0 guess = x_t - 0.6 flow, error over latent frames 1..
    s = prepare_sample(system, {"frames": frames, "keypoints": keypoints.astype(np.float32),
                                "labels": np.zeros(frames.shape[:3], np.uint8), "clip_id": ""}, sparse=None)
    noise = torch.randn(s.latents.shape, generator=torch.Generator().manual_seed(1))
    x_t = 0.4 * s.latents + 0.6 * noise
    with torch.no_grad():
        flow = system.denoiser(x_t, torch.tensor([600.0]), s.condition,
                               system.denoiser.encode_poses(s.pose_video.flip(2), s.ref_pose))
    want = float((x_t - 0.6 * flow - s.latents)[:, :, 1:].square().mean())
    assert out["mse"]["0.6"]["reversed"] == pytest.approx(want, rel=1e-5)
    assert out["mse"]["0.6"]["poses"] != out["mse"]["0.6"]["none"]
    still = system.encode(s.frames[:, :, :1].expand_as(s.frames))
    assert out["still_mse"] == pytest.approx(float((still - s.latents)[:, :, 1:].square().mean()), rel=1e-5)


def test_a_model_blind_to_poses_scores_the_same_with_any_poses(clip):
    frames, keypoints = clip
    system = PoseWanSystem.random(get_preset("tiny"), seed=1)
    with torch.no_grad():
        for enc in (system.denoiser.pose_encoder, system.denoiser.ref_pose_encoder):
            enc.convs[-1].weight.zero_()
            enc.convs[-1].bias.zero_()
    out = R.clip_reliance(system, frames, keypoints, sigmas=(0.9,))
    row = out["mse"]["0.9"]
    assert row["poses"] == row["reversed"] == row["none"]


def test_cli_prints_and_writes_json(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert R.main(["--model", "tiny", "--clips", "1", "--frames", "9", "--json", str(path)]) == 0
    text = capsys.readouterr().out
    assert "sigma | x0 MSE with the poses | reversed | none" in text and "mean guess decodes to" in text
    assert "held still: x0 MSE" in text
    data = json.loads(path.read_text())
    assert set(data["mean"]) == {str(s) for s in R.SIGMAS} and len(data["clips"]) == 1
    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    with pytest.raises(ValueError, match="4n\\+1"):
        R.pose_reliance(system, 1, 8)
    with pytest.raises(ValueError, match="--clips must be at least 1"):
        R.pose_reliance(system, 0, 9)
