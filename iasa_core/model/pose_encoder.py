"""Pose encoders of the UniAnimate-DiT design: pose video -> patch-token features, reference pose -> I2V condition."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .cpu_conv import conv3d_module

# Shapes follow UniAnimate-DiT's public pose-encoder weights so they load through a key map
# (`dwpose_embedding.{2i}` -> `pose_encoder.convs.{i}`, `randomref_embedding_pose.{2i}` -> `ref_pose_encoder.convs.{i}`).
_VIDEO_LAYERS = (  # (kernel, stride, padding) of the hidden Conv3d layers
    (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, (1, 2, 2), 1), (3, 2, 1), (3, 2, 1),
)
_REF_LAYERS = ((3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 1), (3, 2, 1))
LEADING_REPEATS = 3  # the first pose frame is repeated so 4n+1 frames fold to n+1 latent frames


def _conv_stack(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Pixels 0..255 through the convolutions with SiLU between them (none after the last)."""
    x = x.to(convs[0].weight.dtype) / 255.0
    # each convolution's output is a fresh tensor: without autograd the activation can overwrite it
    in_place = not torch.is_grad_enabled()
    for i, conv in enumerate(convs):
        x = conv3d_module(conv, x) if isinstance(conv, nn.Conv3d) else conv(x)
        if i < len(convs) - 1:
            x = F.silu(x, inplace=in_place)
    return x


class PoseVideoEncoder(nn.Module):
    """Rendered pose video (B, 3, T, H, W) in 0..255 -> features (B, dim, (T+3)//4, H/16, W/16)."""

    def __init__(self, out_dim: int, hidden: int = 16) -> None:
        super().__init__()
        layers = []
        in_ch = 3
        for kernel, stride, padding in _VIDEO_LAYERS:
            layers.append(nn.Conv3d(in_ch, hidden, kernel, stride=stride, padding=padding))
            in_ch = hidden
        layers.append(nn.Conv3d(hidden, out_dim, (1, 2, 2), stride=(1, 2, 2), padding=0))
        self.convs = nn.ModuleList(layers)

    def forward(self, pose_video: torch.Tensor) -> torch.Tensor:
        """Encode a pose video whose first frame is the reference-aligned pose."""
        if pose_video.ndim != 5 or pose_video.shape[1] != 3:
            raise ValueError(f"pose video must be (batch, 3, frames, height, width); got {tuple(pose_video.shape)}")
        # Channels-last lets oneDNN run these full-resolution 3-D convolutions about 1.5x faster on CPUs, with
        # bit-identical results; the repeated first frame is written straight into that layout (one copy).
        b, c, t, h, w = pose_video.shape
        x = torch.empty((b, c, LEADING_REPEATS + t, h, w), dtype=pose_video.dtype, device=pose_video.device,
                        memory_format=torch.channels_last_3d)
        x[:, :, :LEADING_REPEATS] = pose_video[:, :, :1]
        x[:, :, LEADING_REPEATS:] = pose_video
        return _conv_stack(self.convs, x)


class RefPoseEncoder(nn.Module):
    """Reference pose image (B, 3, H, W) in 0..255 -> (B, channels, 1, H/8, W/8), added to the I2V condition."""

    def __init__(self, out_channels: int = 20, hidden: int = 16) -> None:
        super().__init__()
        layers = []
        in_ch = 3
        for kernel, stride, padding in _REF_LAYERS:
            layers.append(nn.Conv2d(in_ch, hidden, kernel, stride=stride, padding=padding))
            in_ch = hidden
        layers.append(nn.Conv2d(hidden, out_channels, 3, stride=2, padding=1))
        self.convs = nn.ModuleList(layers)

    def forward(self, pose_image: torch.Tensor) -> torch.Tensor:
        """Encode the reference image's pose."""
        if pose_image.ndim != 4 or pose_image.shape[1] != 3:
            raise ValueError(f"reference pose must be (batch, 3, height, width); got {tuple(pose_image.shape)}")
        return _conv_stack(self.convs, pose_image).unsqueeze(2)
