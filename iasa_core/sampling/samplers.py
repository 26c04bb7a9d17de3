"""Teacher (Euler + CFG) and few-step student samplers over a flow predictor ``predict(x, sigma) -> noise - x0``."""

from __future__ import annotations

from collections.abc import Callable

import torch

Predictor = Callable[[torch.Tensor, float], torch.Tensor]
Callback = Callable[[int, int], None]


class SamplingCancelled(RuntimeError):
    """Raised between steps when the caller asked to stop."""


def _step_done(step: int, total: int, callback: Callback | None, cancel: Callable[[], bool] | None) -> None:
    if callback is not None:
        callback(step, total)
    if cancel is not None and step < total and cancel():
        raise SamplingCancelled(f"sampling cancelled after step {step} of {total}")


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + g * (cond - uncond)."""
    return uncond + guidance * (cond - uncond)


def anchor_first_frame(v: torch.Tensor, x: torch.Tensor, anchor: torch.Tensor, sigma: float) -> torch.Tensor:
    """The flow ``v`` with latent frame 0 replaced by the one that leads straight to ``anchor`` (B, z, 1, h, w).

    Frame 0 of an image-to-video is the reference image, whose clean latent is known. In training that frame
    was noised like every other, x = (1 - s) * x0 + s * noise, so keeping it on that path at every level is
    what the model saw; with v = (x - anchor) / s both samplers land frame 0 on the anchor exactly.
    """
    if sigma <= 0:
        return v
    out = v.clone()
    out[:, :, :1] = ((x[:, :, :1].float() - anchor.float()) / sigma).to(v.dtype)
    return out


def sample_teacher(predict: Predictor, noise: torch.Tensor, sigmas: torch.Tensor, *,
                   callback: Callback | None = None, cancel: Callable[[], bool] | None = None) -> torch.Tensor:
    """Flow-matching Euler from pure noise (sigmas[0] = 1) down to sigmas[-1] = 0, the clean sample."""
    x = noise.clone()
    total = len(sigmas) - 1
    for i in range(total):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        v = predict(x, s)
        x = x + (s_next - s) * v.to(x.dtype)
        _step_done(i + 1, total, callback, cancel)
    return x


def sample_student(predict: Predictor, noise: torch.Tensor, sigmas: torch.Tensor, *,
                   generator: torch.Generator | None = None, callback: Callback | None = None,
                   cancel: Callable[[], bool] | None = None) -> torch.Tensor:
    """Few-step sampling: predict x0 at each level, then re-noise it with fresh noise to the next level."""
    x = noise.clone()
    total = len(sigmas)
    x0 = x
    for i in range(total):
        s = float(sigmas[i])
        v = predict(x, s)
        x0 = x - s * v.to(x.dtype)
        if i + 1 < total:
            s_next = float(sigmas[i + 1])
            fresh = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
            x = (1 - s_next) * x0 + s_next * fresh
        _step_done(i + 1, total, callback, cancel)
    return x0
