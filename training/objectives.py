"""Losses of the two training stages: flow matching (teacher) and distribution matching (student, DMD)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from iasa_core.sampling.schedules import shift_sigma


def sample_sigma(u: torch.Tensor | float, shift: float, t_min: float = 0.0, t_max: float = 1.0) -> torch.Tensor:
    """Noise levels from uniform draws ``u`` in [0, 1): mapped to [t_min, t_max], then warped by the shift."""
    u = torch.as_tensor(u, dtype=torch.float64)
    return shift_sigma(t_min + (t_max - t_min) * u, shift).float()


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Flow-matching interpolation x_t = (1 - sigma) x0 + sigma noise (sigma broadcast per sample)."""
    s = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device)
    if s.ndim == 1:
        s = s.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise


def flow_matching_loss(pred: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the predicted flow and its target noise - x0 (Wan's training objective); with ``weights``
    (broadcastable to the latents, e.g. ``latent_region_weights``) their weighted mean, on the same scale."""
    if weights is None:
        return F.mse_loss(pred.float(), (noise - x0).float())
    err = (pred.float() - (noise - x0).float()) ** 2
    w = weights.float().expand_as(err)
    return (err * w).sum() / w.sum()


def latent_region_weights(labels: torch.Tensor, latent_shape: tuple[int, ...], region_weights: dict[int, float],
                          temporal: int = 4, masks: list[tuple[torch.Tensor, float]] = ()) -> torch.Tensor:
    """Loss weights (1, 1, F, h, w) on the latent grid from pixel region labels (T, H, W): 1 + sum over regions of
    weight x the share of the cell's pixels in that region (the most of the video frames a latent frame covers:
    frame 0 alone, then groups of ``temporal``). ``masks``: more (T, H, W) bool pixel masks with their weights."""
    f, h, w = latent_shape[-3:]
    t = labels.shape[0]
    if t != 1 + temporal * (f - 1) or labels.shape[1] % h or labels.shape[2] % w:
        raise ValueError(f"region labels {tuple(labels.shape)} do not fit latents {tuple(latent_shape)}: "
                         f"expected {1 + temporal * (f - 1)} frames and a size that is a multiple of {h}x{w}")
    out = torch.ones(1, 1, f, h, w, device=labels.device)
    pixel_masks = [(labels == region, weight) for region, weight in region_weights.items()] + list(masks)
    for mask, weight in pixel_masks:
        if weight == 0:
            continue
        if mask.shape != labels.shape:
            raise ValueError(f"a loss mask of shape {tuple(mask.shape)} does not match the labels {tuple(labels.shape)}")
        share = F.adaptive_avg_pool2d(mask.float()[:, None], (h, w))[:, 0]  # (T, h, w)
        first, rest = share[:1], share[1:].reshape(f - 1, temporal, h, w).amax(1)
        out = out + weight * torch.cat([first, rest]).to(out.device)[None, None]
    return out


def box_masks(boxes: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor:
    """(T, H, W) bool masks of per-frame pixel boxes (T, 4) x0, y0, x1, y1 (x1, y1 exclusive)."""
    b = torch.as_tensor(np.asarray(boxes), dtype=torch.long)
    ys, xs = torch.arange(height)[None, :, None], torch.arange(width)[None, None, :]
    return ((ys >= b[:, 1, None, None]) & (ys < b[:, 3, None, None])
            & (xs >= b[:, 0, None, None]) & (xs < b[:, 2, None, None]))


def x0_from_flow(x_t: torch.Tensor, flow: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """The clean sample a flow prediction implies: x_t - sigma * flow."""
    s = torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device)
    if s.ndim == 1:
        s = s.view(-1, *([1] * (x_t.ndim - 1)))
    return x_t - s * flow.to(x_t.dtype)


def dmd_gradient(x: torch.Tensor, pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """DMD's per-sample normalised gradient (pred_fake - pred_real) / mean|x - pred_real| (DMD eq. 7)."""
    with torch.no_grad():
        dims = tuple(range(1, x.ndim))
        normaliser = (x.float() - pred_real.float()).abs().mean(dim=dims, keepdim=True).clamp_min(1e-8)
        grad = (pred_fake.float() - pred_real.float()) / normaliser
        return torch.nan_to_num(grad)


def dmd_loss(x: torch.Tensor, pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * MSE(x, stopgrad(x - grad)): its gradient with respect to x is grad / x.numel()."""
    grad = dmd_gradient(x, pred_real, pred_fake)
    target = (x.float() - grad).detach()
    return 0.5 * F.mse_loss(x.float(), target)
