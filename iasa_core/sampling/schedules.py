"""Flow-matching noise levels: the timestep shift, teacher and few-step student schedules."""

from __future__ import annotations

from collections.abc import Sequence

import torch

DEFAULT_SHIFT = 5.0                       # Wan2.1's shift at 480p
STUDENT_TIMESTEPS = (1000, 750, 500, 250)  # lightx2v / Self-Forcing 4-step student
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor:
    """Warp noise levels towards the noisy end: shift*s / (1 + (shift-1)*s)."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    if shift <= 0:
        raise ValueError(f"shift must be positive; got {shift}")
    return shift * s / (1 + (shift - 1) * s)


def teacher_sigmas(steps: int, shift: float = DEFAULT_SHIFT) -> torch.Tensor:
    """steps+1 decreasing noise levels from 1 to 0 (the last is the clean sample)."""
    if steps < 1:
        raise ValueError(f"the teacher needs at least 1 step; got {steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def student_sigmas(timesteps: Sequence[float] = STUDENT_TIMESTEPS, shift: float = DEFAULT_SHIFT) -> torch.Tensor:
    """Noise levels of a few-step student: its timesteps (out of 1000), warped by the shift."""
    t = torch.as_tensor(list(timesteps), dtype=torch.float64)
    if t.ndim != 1 or len(t) < 1:
        raise ValueError(f"student timesteps must be a non-empty list; got {list(timesteps)}")
    if bool((t <= 0).any()) or bool((t > NUM_TRAIN_TIMESTEPS).any()) or bool((t[1:] >= t[:-1]).any()):
        raise ValueError(f"student timesteps must decrease within (0, {NUM_TRAIN_TIMESTEPS}]; got {t.tolist()}")
    return shift_sigma(t / NUM_TRAIN_TIMESTEPS, shift)


def sigma_to_timestep(sigma: float) -> float:
    """The timestep value the Wan transformer takes for a noise level."""
    return float(sigma) * NUM_TRAIN_TIMESTEPS
