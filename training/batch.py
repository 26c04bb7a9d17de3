"""One dataset clip -> the tensors a training step feeds the pose-conditioned denoiser."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from iasa_core.model.pose_wan import Condition, drop_pose
from iasa_core.model.system import PoseWanSystem
from iasa_core.pipeline import plan_options
from iasa_core.pose.render import RenderStyle, render_poses_tensor
from iasa_core.sparse.grid import SPATIAL_STRIDE
from iasa_core.sparse.plan import SparsePlan, build_plan

from .sample_cache import SampleCache


@dataclass
class TrainSample:
    """A clip ready for the denoiser: target latents, condition, raw pose images, plan and ground truth."""

    latents: torch.Tensor      # (1, z, F, h, w) normalised VAE latents of the clip
    condition: Condition       # reference image (I2V y + CLIP) and prompt
    pose_video: torch.Tensor   # (1, 3, T, H, W) pose images, 0..255 (the pose encoder is trained, so raw)
    ref_pose: torch.Tensor     # (1, 3, H, W) pose image of the reference frame
    plan: SparsePlan | None
    frames: torch.Tensor       # (1, 3, T, H, W) ground-truth pixels in [-1, 1]
    labels: torch.Tensor       # (T, H, W) region label map
    keypoints: torch.Tensor    # (T, 133, 3) pixel keypoints
    clip_id: str = ""


def check_clip(frames: torch.Tensor, keypoints: torch.Tensor, clip_id: str) -> None:
    """Clear errors for clips the model cannot take (frame count and size)."""
    t, h, w = frames.shape[:3]
    if (t - 1) % 4:
        raise ValueError(f"clip {clip_id}: {t} frames; the Wan VAE needs 4n+1 (prepare with --frames 81, 49, 9...)")
    if h % SPATIAL_STRIDE or w % SPATIAL_STRIDE:
        raise ValueError(f"clip {clip_id}: size {h}x{w} must be a multiple of {SPATIAL_STRIDE}; prepare with "
                         "another --size")
    if keypoints.shape[0] != t:
        raise ValueError(f"clip {clip_id}: {keypoints.shape[0]} keypoint frames for {t} video frames")


def clip_identity(item: dict[str, Any]) -> str:
    """A clip's cache identity: its id and a digest of its frames and keypoints.

    Ids come from video file names, so two prepared datasets (``data.more_roots``, another world seed) hold
    different clips under the same id; keyed by id alone they read each other's latents with their own poses."""
    clip_id = str(item.get("clip_id", ""))
    if not clip_id:
        return ""
    digest = hashlib.blake2b(digest_size=8)
    for name in ("frames", "keypoints"):
        digest.update(np.ascontiguousarray(np.asarray(item[name])).tobytes())
    return f"{clip_id}@{digest.hexdigest()}"


def encoded_key(identity: str, ref_index: int, style: RenderStyle) -> tuple:
    """The cache key of a clip's encodings (``identity`` from ``clip_identity``)."""
    # One process trains one model, so one style: the key (and the disk file name) names the colour order only.
    return ("encoded", identity, ref_index, style.bgr)


def prepare_sample(system: PoseWanSystem, item: dict[str, Any], *, sparse: dict[str, Any] | None,
                   ref_index: int = 0, style: RenderStyle | None = None, cache: SampleCache | None = None,
                   encode_bf16: bool = False) -> TrainSample:
    """Encode one clip (``ClipDataset`` item) with the frozen VAE/CLIP and build its sparse plan.

    ``style``: how the pose images are drawn; None: the model's own (``system.pose_style()``), as inference does.

    ``encode_bf16`` runs the frozen encoders under bf16 autocast (3x quicker on CPUs with AMX; bf16 inference
    encodes its reference image the same way); the results are float32 either way.
    """
    frames = torch.as_tensor(item["frames"])
    keypoints = torch.as_tensor(item["keypoints"]).float()
    clip_id = str(item.get("clip_id", ""))
    check_clip(frames, keypoints, clip_id)
    t, h, w = frames.shape[:3]
    device = system.device
    video = frames.permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # (1, 3, T, H, W)
    kp = keypoints.numpy()
    identity = clip_identity(item) if cache is not None else ""
    use_cache = bool(identity)
    style = style or system.pose_style()
    key = encoded_key(identity, ref_index, style)
    hit = cache.get(key) if use_cache else None
    if hit is None:
        bf16 = torch.autocast(device.type, dtype=torch.bfloat16) if encode_bf16 else contextlib.nullcontext()
        with torch.no_grad(), bf16:
            latents = system.encode(video).to(device, torch.float32)
            ref_image = np.ascontiguousarray(frames[ref_index].numpy())
            condition = system.condition(ref_image, t)
        hit = (latents, condition, None)
    if hit[2] is None:  # pose images are cheap to draw and large to store, so the disk cache leaves them out
        pose_u8 = render_poses_tensor(kp, h, w, style).round().clamp(0, 255).to(torch.uint8)
        hit = (hit[0], hit[1], pose_u8)
        if use_cache:
            cache.put(key, hit)
    latents, condition, pose_u8 = hit
    plan = None
    if sparse is not None:  # one plan per attention setting (the teacher may mix dense, global and IASA)
        plan_key = ("plan", identity, repr(sorted(sparse.items())))
        plan = cache.get(plan_key) if use_cache else None
        if plan is None:
            plan = build_plan(kp, (h, w), **plan_options(sparse))
            if use_cache:
                cache.put(plan_key, plan)
    pose_video = pose_u8.float()[None].to(device)
    ref_pose = pose_video[:, :, ref_index]
    return TrainSample(latents, condition, pose_video, ref_pose, plan, video.to(device),
                       torch.as_tensor(item["labels"]), keypoints, clip_id)


class PosedDenoiser(torch.nn.Module):
    """Pose encoders and denoiser in one forward, so DDP sees every trained weight in a single call."""

    def __init__(self, denoiser: torch.nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x_t: torch.Tensor, timestep: torch.Tensor, condition: Condition, pose_video: torch.Tensor,
                ref_pose: torch.Tensor, keep_pose: torch.Tensor | None = None) -> torch.Tensor:
        """Flow prediction for noisy latents, encoding the pose images first."""
        features = self.denoiser.encode_poses(pose_video, ref_pose)
        if keep_pose is not None:
            features = drop_pose(features, keep_pose)
        return self.denoiser(x_t, timestep, condition, features)
