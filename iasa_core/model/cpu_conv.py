"""3-D convolutions on CPU in float32 through oneDNN, whatever their size.

PyTorch picks oneDNN for a float32 CPU convolution only when batch x channels x the first two spatial sizes
exceed 20480; for a 5-D input that product leaves out the width, so the small-channel, short-window 3-D
convolutions of the Wan VAE and of the pose encoder (8-16 channels, a few frames, 128 pixels wide) fall to
its single-threaded reference kernel, 6-20x slower (measured here: 8->8 channels, 14 x 130 x 130 input,
0.31 s against 0.04 s). Calling oneDNN directly gives the same values to float rounding, with gradients.
CPUs with native bf16 never met this: the size rule applies to float32 alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _triple(value: int | Sequence[int]) -> list[int]:
    return [int(value)] * 3 if isinstance(value, int) else [int(v) for v in value]


def use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``conv3d`` sends this input to oneDNN (CPU, float32, oneDNN built in and enabled)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.ndim == 5 and not torch.is_autocast_enabled("cpu")  # autocast decides the dtype itself
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
           dilation: int | Sequence[int] = 1, groups: int = 1) -> torch.Tensor:
    """``F.conv3d`` with zero padding given as numbers, through oneDNN on CPU float32 (see the module)."""
    if not use_onednn(x, weight):
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
    return torch.mkldnn_convolution(x, weight, bias, _triple(padding), _triple(stride), _triple(dilation), groups)


def conv3d_module(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for an ``nn.Conv3d`` with zero padding, through ``conv3d``."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return conv(x)
    return conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
