"""Wan2.1 token grid: video frames -> latent frames, pixels -> tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPORAL_STRIDE = 4  # the Wan VAE keeps frame 0, then packs groups of 4 frames
SPATIAL_STRIDE = 16  # VAE 8x times the DiT's 2x2 patch


@dataclass(frozen=True)
class TokenGrid:
    """Where each video frame and pixel lands among the DiT's tokens."""

    num_frames: int  # video frames
    height: int  # pixels
    width: int

    def __post_init__(self) -> None:
        if self.num_frames < 1 or (self.num_frames - 1) % TEMPORAL_STRIDE:
            raise ValueError(
                f"num_frames must be 4n+1 (1, 5, ..., 77, 81) because the Wan VAE packs frame 0 alone "
                f"and then groups of 4; got {self.num_frames}. Trim or pad the poses to e.g. "
                f"{max(1, (self.num_frames - 1) // TEMPORAL_STRIDE * TEMPORAL_STRIDE + 1)} frames.")
        if self.height <= 0 or self.width <= 0 or self.height % SPATIAL_STRIDE or self.width % SPATIAL_STRIDE:
            raise ValueError(
                f"video size must be positive multiples of {SPATIAL_STRIDE} pixels (VAE 8x, patch 2x2); "
                f"got {self.height}x{self.width}. Use e.g. "
                f"{max(16, self.height // 16 * 16)}x{max(16, self.width // 16 * 16)}.")

    @property
    def latent_frames(self) -> int:
        """Number of latent frames T."""
        return (self.num_frames - 1) // TEMPORAL_STRIDE + 1

    @property
    def token_hw(self) -> tuple[int, int]:
        """Tokens per latent frame as (rows, cols)."""
        return self.height // SPATIAL_STRIDE, self.width // SPATIAL_STRIDE

    @property
    def tokens_per_frame(self) -> int:
        """Tokens in one latent frame N."""
        h, w = self.token_hw
        return h * w

    @property
    def seq_len(self) -> int:
        """Total tokens S = T * N."""
        return self.latent_frames * self.tokens_per_frame

    def latent_index(self) -> np.ndarray:
        """Latent frame of each video frame: (t + 3) // 4."""
        return (np.arange(self.num_frames) + TEMPORAL_STRIDE - 1) // TEMPORAL_STRIDE

    def token_centers(self) -> np.ndarray:
        """(N, 2) pixel centres (x, y) of a latent frame's tokens in raster order."""
        h, w = self.token_hw
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        c = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)
        return (c + 0.5) * SPATIAL_STRIDE


def parse_size(text: str) -> tuple[int, int]:
    """Parse 'HxW' (e.g. '720x1280') into (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"size must look like HxW, e.g. 480x832; got {text!r}") from None
    return h, w
