"""The pose-conditioned Wan2.1 I2V denoiser: diffusers' WanTransformer3DModel plus UniAnimate-style pose encoders."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial

import torch
from diffusers import WanTransformer3DModel
from torch import nn

from .pose_encoder import PoseVideoEncoder, RefPoseEncoder
from .presets import PoseWanConfig
from .text_attention import compact_text_attention


@dataclass
class Condition:
    """Everything but the noisy latents that one denoiser call needs."""

    y: torch.Tensor                    # (B, 4 + z, F, h, w): first-frame mask + reference image latents
    text: torch.Tensor                 # (B, text_len, text_dim) prompt embeddings
    image: torch.Tensor | None = None  # (B, N, image_dim) CLIP-vision hidden states of the reference image


@dataclass
class PoseFeatures:
    """Encoded pose inputs; computed once per sampling run since they do not depend on the noise level."""

    video: torch.Tensor  # (B, dim, F, h/2, w/2), added to the patch tokens
    ref: torch.Tensor | None = None  # (B, 4 + z, 1, h, w), added to the I2V condition


def drop_condition(condition: Condition, keep_image: torch.Tensor) -> Condition:
    """The condition with the reference image zeroed where ``keep_image`` (B,) is 0: CFG's unconditional input.

    One definition for training dropout and inference guidance, so the model is guided with what it learnt.
    """
    k = keep_image.to(condition.y.dtype)
    y = condition.y * k.view(-1, 1, 1, 1, 1)
    image = condition.image * k.view(-1, 1, 1).to(condition.image.dtype) if condition.image is not None else None
    return Condition(y, condition.text, image)


def drop_pose(features: PoseFeatures, keep_pose: torch.Tensor) -> PoseFeatures:
    """Pose features zeroed where ``keep_pose`` (B,) is 0; multiplying keeps every weight in the graph (DDP)."""
    k = keep_pose.to(features.video.dtype).view(-1, 1, 1, 1, 1)
    return PoseFeatures(features.video * k, features.ref * k if features.ref is not None else None)


def reference_in_every_frame(y: torch.Tensor, latent_channels: int) -> torch.Tensor:
    """I2V condition (B, mask + z, F, h, w) with frame 0's latent channels copied into every frame; mask kept."""
    masks = y.shape[1] - latent_channels
    ref = y[:, masks:, :1].expand(-1, -1, y.shape[2], -1, -1)
    return torch.cat([y[:, :masks], ref], dim=1)


class PoseWanTransformer(nn.Module):
    """Wan2.1 I2V transformer whose patch tokens get pose features added right after patchify (and, with
    ``config.pose_blocks``, a learnt linear map of them before every block)."""

    def __init__(self, config: PoseWanConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = WanTransformer3DModel(**config.transformer)
        compact_text_attention(self.transformer)
        self.pose_encoder = PoseVideoEncoder(config.dim, config.pose_hidden)
        self.ref_pose_encoder = RefPoseEncoder(config.condition_channels, config.pose_hidden)
        self._pose_tokens: torch.Tensor | None = None
        self._pose_sequence: torch.Tensor | None = None
        # A hook instead of a forked forward(): diffusers' forward stays the one that runs.
        self.transformer.patch_embedding.register_forward_hook(self._add_pose_tokens)
        self.block_pose_proj: nn.ModuleList | None = None
        if config.pose_blocks:
            # No bias: a dropped pose (zero tokens) and no pose at all must stay the same input.
            self.block_pose_proj = nn.ModuleList(nn.Linear(config.dim, config.dim, bias=False)
                                                 for _ in self.transformer.blocks)
            for i, (proj, block) in enumerate(zip(self.block_pose_proj, self.transformer.blocks, strict=True)):
                nn.init.zeros_(proj.weight)  # zero: a model given these maps computes what it did before
                block.register_forward_pre_hook(partial(self._add_block_pose, i))

    def _add_pose_tokens(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        pose = self._pose_tokens
        if pose is None:
            return output
        if pose.shape[2:] != output.shape[2:] or pose.shape[1] != output.shape[1]:
            raise ValueError(
                f"pose features {tuple(pose.shape)} do not match the patch tokens {tuple(output.shape)}: "
                "the pose video must have the video's frame count and size")
        if pose.shape[0] != output.shape[0]:
            pose = pose.expand(output.shape[0], -1, -1, -1, -1)
        return output + pose.to(output.dtype)

    def _add_block_pose(self, index: int, module: nn.Module, args: tuple) -> tuple | None:
        """Block ``index``'s input hidden states (B, L, dim) plus its linear map of the pose tokens."""
        if self._pose_tokens is None:
            return None
        if self._pose_sequence is None:  # (B, dim, F, h, w) -> (B, F*h*w, dim): diffusers' token order
            self._pose_sequence = self._pose_tokens.flatten(2).transpose(1, 2)
        hidden = args[0]
        seq = self._pose_sequence
        if seq.shape[1:] != hidden.shape[1:]:
            raise ValueError(f"pose tokens {tuple(seq.shape)} do not match block {index}'s input "
                             f"{tuple(hidden.shape)}: the pose video must have the video's frame count and size")
        if seq.shape[0] != hidden.shape[0]:
            seq = seq.expand(hidden.shape[0], -1, -1)
        proj = self.block_pose_proj[index]
        return (hidden + proj(seq.to(proj.weight.dtype)).to(hidden.dtype), *args[1:])

    @contextlib.contextmanager
    def _pose_added(self, pose: torch.Tensor | None):
        self._pose_tokens = pose
        self._pose_sequence = None
        try:
            yield
        finally:
            self._pose_tokens = None
            self._pose_sequence = None

    def encode_poses(self, pose_video: torch.Tensor, ref_pose: torch.Tensor | None = None) -> PoseFeatures:
        """Pose video (B, 3, T, H, W) and reference pose image (B, 3, H, W), both 0..255, to features."""
        video = self.pose_encoder(pose_video)
        ref = self.ref_pose_encoder(ref_pose) if ref_pose is not None else None
        return PoseFeatures(video, ref)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, condition: Condition,
                pose: PoseFeatures | None = None) -> torch.Tensor:
        """Flow prediction (noise - x0) for noisy latents (B, z, F, h, w) at timesteps (B,) in 0..1000."""
        y = condition.y
        if y.shape[0] != latents.shape[0]:
            y = y.expand(latents.shape[0], -1, -1, -1, -1)
        if self.config.ref_every_frame:
            y = reference_in_every_frame(y, self.config.transformer["out_channels"])
        if pose is not None and pose.ref is not None:
            y = y + pose.ref.to(y.dtype)
        if y.shape[2:] != latents.shape[2:]:
            raise ValueError(f"condition latents {tuple(y.shape)} do not match the noisy latents "
                             f"{tuple(latents.shape)}")
        x = torch.cat([latents, y.to(latents.dtype)], dim=1)
        text, image = condition.text, condition.image
        if text.shape[0] != latents.shape[0]:
            text = text.expand(latents.shape[0], -1, -1)
        if image is not None and image.shape[0] != latents.shape[0]:
            image = image.expand(latents.shape[0], -1, -1)
        if timestep.ndim == 0:
            timestep = timestep.expand(latents.shape[0])
        with self._pose_added(pose.video if pose is not None else None):
            out = self.transformer(x, timestep, encoder_hidden_states=text, encoder_hidden_states_image=image,
                                   return_dict=False)[0]
        return out
