"""training.mouth_response: true poses against the same poses with the lips shut."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iasa_core.bench.quality import heldout_clips
from iasa_core.model.presets import get_preset
from iasa_core.model.system import PoseWanSystem
from iasa_core.pose import layout as L
from iasa_core.pose.render import mouth_opening
from training import mouth_response as M


@pytest.fixture(scope="module")
def clip():
    c = heldout_clips(1, 9 / 25.0, size=64)[0]
    return c.frames[:9], c.poses.keypoints[:9]


def test_shut_lips_closes_the_mouth_and_moves_nothing_else(clip):
    _, kp = clip
    shut = M.shut_lips(kp)
    assert any(mouth_opening(k) > 0 for k in kp) and all(mouth_opening(k) == 0 for k in shut)
    inner = list(L.INNER_LIPS)
    others = [i for i in range(L.NUM_KEYPOINTS) if i not in inner[1:4] + inner[5:8]]
    assert np.array_equal(shut[:, others], kp[:, others]) and np.array_equal(shut[..., 0], kp[..., 0])


def _tiny(seed: int, **schedule) -> PoseWanSystem:
    system = PoseWanSystem.random(get_preset("tiny"), seed=seed)
    system.schedule = dict(system.schedule, **schedule)
    with torch.no_grad():  # a random pose encoder fades its input layer by layer; a louder one carries the lips
        for conv in system.denoiser.pose_encoder.convs:
            conv.weight.mul_(4.0)
    return system


def test_only_a_model_that_sees_the_lips_answers_them(clip):
    frames, kp = clip
    blind = _tiny(1, pose_face=True, pose_mouth=True)
    with torch.no_grad():
        for enc in (blind.denoiser.pose_encoder, blind.denoiser.ref_pose_encoder):
            enc.convs[-1].weight.zero_()
            enc.convs[-1].bias.zero_()
    row = M.clip_response(blind, frames, kp, steps=2)
    assert row["response"] == 0.0 and row["truth_std"] > 0 and np.isfinite(row["r_truth"])
    # pose images without face points carry no lips, whatever the model
    assert M.clip_response(_tiny(1), frames, kp, steps=2)["response"] == 0.0
    assert M.clip_response(_tiny(1, pose_face=True, pose_mouth=True), frames, kp, steps=2)["response"] > 0.1


def test_cli_prints_and_writes_json(tmp_path, capsys):
    path = tmp_path / "m.json"
    assert M.main(["--model", "tiny", "--clips", "1", "--frames", "9", "--steps", "2", "--json", str(path)]) == 0
    assert "clip 1: response" in capsys.readouterr().out
    assert set(json.loads(path.read_text())[0]) == {"response", "truth_std", "r_response", "r_truth"}
    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    with pytest.raises(ValueError, match="4n\\+1"):
        M.mouth_response(system, 1, 8)
    with pytest.raises(ValueError, match="--clips must be at least 1"):
        M.mouth_response(system, 0, 9)
