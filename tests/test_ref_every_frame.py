"""``config.ref_every_frame``: the reference latent in every frame's I2V condition, the mask kept as it is."""

from __future__ import annotations

import torch

from iasa_core.model.checkpoint import load_student, save_student
from iasa_core.model.pose_wan import Condition, PoseWanTransformer, reference_in_every_frame
from iasa_core.model.presets import PoseWanConfig, get_preset
from iasa_core.model.system import PoseWanSystem
from tests.test_grow_model import _inputs


def _denoise(denoiser: PoseWanTransformer, inputs, y: torch.Tensor | None = None) -> torch.Tensor:
    latents, cond, pose_video, ref_pose = inputs
    if y is not None:
        cond = Condition(y, cond.text, cond.image)
    with torch.no_grad():
        return denoiser(latents, torch.tensor([500.0]), cond, denoiser.encode_poses(pose_video, ref_pose))


def test_reference_in_every_frame_copies_frame_zero_latents_and_keeps_the_mask():
    y = torch.arange(2 * 20 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 20, 3, 2, 2)
    out = reference_in_every_frame(y, 16)
    assert out.shape == y.shape
    assert torch.equal(out[:, :4], y[:, :4])  # the mask still marks frame 0 alone as given
    for f in range(3):
        assert torch.equal(out[:, 4:, f], y[:, 4:, 0])


def test_the_flag_is_the_plain_model_given_a_tiled_condition_and_it_survives_a_file(tmp_path):
    plain = PoseWanSystem.random(get_preset("tiny"), seed=1)
    config = PoseWanConfig.from_dict(plain.config.to_dict())
    config.ref_every_frame = True
    tiled = PoseWanTransformer(config).eval()
    tiled.load_state_dict(plain.denoiser.state_dict())
    inputs = _inputs(2)
    y = inputs[1].y
    want = _denoise(plain.denoiser, inputs, reference_in_every_frame(y, 16))
    assert torch.equal(_denoise(tiled, inputs), want)
    assert (want - _denoise(plain.denoiser, inputs)).abs().max() > 1e-4  # the flag changes what is computed
    # Old files have no key (older readers keep loading them); a flagged model writes it and reads it back.
    assert "ref_every_frame" not in plain.config.to_dict() and config.to_dict()["ref_every_frame"] is True
    plain.denoiser, plain.config = tiled, config
    loaded = load_student(save_student(plain, tmp_path / "ref.safetensors"))
    assert loaded.config.ref_every_frame and torch.equal(_denoise(loaded.denoiser, inputs), want)

