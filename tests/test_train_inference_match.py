"""Oracles for "the model sees at inference exactly what it learnt from": one clip through the training path
(``training.batch.prepare_sample``) and through ``generate_video`` must give the denoiser identical inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iasa_core.model.pose_wan import PoseWanTransformer
from iasa_core.pipeline import GenerateOptions, generate_video
from iasa_core.pose.render import RenderStyle
from iasa_core.pose.sequence import PoseSequence
from tests.test_training import SIZE, dataset_root  # noqa: F401 (fixture)
from training.batch import prepare_sample
from training.config import ModelSpec
from training.data import ClipDataset
from training.model_setup import load_system

SPARSE = {"top_k": 2, "block_size": 16, "sink_first": True}


def _inference_inputs(system, image: np.ndarray, keypoints: np.ndarray, monkeypatch) -> dict:
    """What generate_video hands the denoiser on its first call (one window, dense-free student path)."""
    seen: dict = {}
    real = PoseWanTransformer.forward

    def spy(self, latents, timestep, condition, pose=None):
        if not seen:
            seen.update(condition=condition, pose=pose, latents=latents.clone())
        return real(self, latents, timestep, condition, pose)

    monkeypatch.setattr(PoseWanTransformer, "forward", spy)
    poses = PoseSequence(keypoints, SIZE, SIZE, 25.0)
    system.sparse = dict(system.sparse, **SPARSE)
    result = generate_video(system, image, poses, GenerateOptions(sampler="student", timesteps=[1000], seed=0))
    seen["plans"] = result.plans
    return seen


@pytest.mark.parametrize("pose_face", [None, True])
def test_training_and_inference_feed_the_denoiser_the_same_inputs(dataset_root, monkeypatch, pose_face):  # noqa: F811
    system = load_system(ModelSpec(spec="tiny", pose_face=pose_face), torch.device("cpu"))
    item = ClipDataset(dataset_root)[0]
    sample = prepare_sample(system, item, sparse=dict(system.sparse, **SPARSE))
    frames = item["frames"].numpy()
    seen = _inference_inputs(system, np.ascontiguousarray(frames[0]), item["keypoints"].numpy(), monkeypatch)

    # The I2V condition: mask channels, reference latents and CLIP states, bit for bit.
    cond = seen["condition"]
    assert torch.equal(cond.y[:1], sample.condition.y)
    assert torch.equal(cond.y[0, :4, 0], torch.ones_like(cond.y[0, :4, 0]))
    assert torch.equal(cond.y[0, :4, 1:], torch.zeros_like(cond.y[0, :4, 1:]))
    assert torch.equal(cond.image[:1], sample.condition.image)
    assert torch.equal(cond.text[:1], sample.condition.text)
    # The oracle: the condition holds the exact clean latent of frame 0, the latent the model is trained to
    # produce there (the causal VAE encodes the first frame alone).
    assert torch.allclose(cond.y[0, 4:, 0], sample.latents[0, :, 0], atol=1e-5)
    # Pose images: the same renderer, colour order, normalisation and frame alignment.
    with torch.no_grad():
        train_pose = system.denoiser.encode_poses(sample.pose_video, sample.ref_pose)
    assert torch.equal(seen["pose"].video[:1], train_pose.video)
    assert torch.equal(seen["pose"].ref[:1], train_pose.ref)
    # The sparse plan: the same keypoints give the same block pattern.
    assert seen["plans"][0]["density"] == sample.plan.to_summary()["density"]
    assert seen["latents"].shape == sample.latents.shape
    # Face landmarks are drawn exactly when the model says so (they are the mouth's only way in).
    other = prepare_sample(system, item, sparse=None, style=RenderStyle(face=not pose_face))
    assert system.pose_style().face is bool(pose_face)
    assert not torch.equal(other.pose_video, sample.pose_video)
