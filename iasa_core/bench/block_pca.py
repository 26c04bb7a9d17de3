"""A linear codec on the Wan VAE's own latent grid: principal components of 8x8-pixel blocks over 4 frames.

Each latent cell of the Wan VAE stands for an 8x8 block of 4 video frames (the first frame alone); a codec that
keeps the ``k`` leading principal components of those blocks spends exactly the VAE's budget (``k`` = z_dim
numbers per cell) with no learning beyond an SVD. It is the yardstick a VAE must beat (`bench vae` prints it) and
the target that guides a VAE's encoder early in training (``training.train_vae --pca-weight``).

Videos are (B, 3, 1 + 4n, H, W) in [-1, 1] with H and W multiples of 8; coefficients are
(B, k, 1 + n, H / 8, W / 8), the first latent frame from the first video frame's own components.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

BLOCK = 8    # pixels per latent cell, each side
FRAMES = 4   # video frames per latent frame after the first


@dataclass
class BlockPCA:
    """Means and orthonormal bases: ``first`` for single-frame blocks (3*8*8), ``rest`` for 4-frame blocks."""

    first_mean: torch.Tensor   # (192,)
    first_basis: torch.Tensor  # (k, 192)
    rest_mean: torch.Tensor    # (768,)
    rest_basis: torch.Tensor   # (k, 768)

    @property
    def channels(self) -> int:
        """Coefficients per latent cell."""
        return self.rest_basis.shape[0]


def _check(video: torch.Tensor) -> None:
    if video.ndim != 5 or video.shape[1] != 3 or (video.shape[2] - 1) % FRAMES or video.shape[3] % BLOCK \
            or video.shape[4] % BLOCK:
        raise ValueError(f"block PCA needs videos (batch, 3, 1 + 4n, H, W) with H and W multiples of {BLOCK}; "
                         f"got {tuple(video.shape)}")


def _blocks(video: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, 3, frames * n, H, W) -> (B, n, H/8, W/8, 3 * frames * 64) block vectors."""
    b, c, t, h, w = video.shape
    x = video.reshape(b, c, t // frames, frames, h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, t // frames, h // BLOCK, w // BLOCK, -1)


def _unblocks(vectors: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of ``_blocks``."""
    b, n, hb, wb, _ = vectors.shape
    x = vectors.reshape(b, n, hb, wb, 3, frames, BLOCK, BLOCK)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, 3, n * frames, hb * BLOCK, wb * BLOCK)


def _split(video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block vectors of the first frame (B, 1, h, w, 192) and of the 4-frame groups (B, n, h, w, 768)."""
    _check(video)
    video = video.float()
    return _blocks(video[:, :, :1], 1), _blocks(video[:, :, 1:], FRAMES)


class _Moments:
    """Running sum and scatter of block vectors (videos are summed one at a time: a dataset does not fit in RAM)."""

    def __init__(self) -> None:
        self.n, self.total, self.scatter = 0, None, None

    def add(self, vectors: torch.Tensor) -> None:
        flat = vectors.reshape(-1, vectors.shape[-1]).double()
        if self.total is None:
            self.total, self.scatter = flat.sum(dim=0), flat.T @ flat
        else:
            self.total, self.scatter = self.total + flat.sum(dim=0), self.scatter + flat.T @ flat
        self.n += flat.shape[0]

    def principal(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.n < k:
            raise ValueError(f"block PCA with {k} components needs at least {k} blocks; got {self.n}")
        mean = self.total / self.n
        cov = self.scatter / self.n - torch.outer(mean, mean)
        vectors = torch.linalg.eigh(cov)[1]  # ascending eigenvalues
        return mean.float(), vectors[:, -k:].flip(-1).T.contiguous().float()


def fit_block_pca(videos: Iterable[torch.Tensor], k: int = 16) -> BlockPCA:
    """The ``k`` leading principal components of the blocks of ``videos`` (each (B, 3, 1 + 4n, H, W))."""
    first, rest = _Moments(), _Moments()
    for video in videos:
        f, r = _split(video)
        first.add(f)
        rest.add(r)
    if first.total is None:
        raise ValueError("fit_block_pca needs at least one video")
    return BlockPCA(*first.principal(k), *rest.principal(k))


def encode(pca: BlockPCA, video: torch.Tensor) -> torch.Tensor:
    """Coefficients (B, k, 1 + n, H/8, W/8) of ``video`` (B, 3, 1 + 4n, H, W)."""
    f, r = _split(video)
    cf = (f - pca.first_mean) @ pca.first_basis.T
    cr = (r - pca.rest_mean) @ pca.rest_basis.T
    return torch.cat([cf, cr], dim=1).permute(0, 4, 1, 2, 3).contiguous()


def decode(pca: BlockPCA, coefficients: torch.Tensor) -> torch.Tensor:
    """Video (B, 3, 1 + 4n, H, W) from coefficients (B, k, 1 + n, H/8, W/8), clamped to [-1, 1]."""
    c = coefficients.float().permute(0, 2, 3, 4, 1)
    first = _unblocks(c[:, :1] @ pca.first_basis + pca.first_mean, 1)
    rest = _unblocks(c[:, 1:] @ pca.rest_basis + pca.rest_mean, FRAMES)
    return torch.cat([first, rest], dim=2).clamp(-1.0, 1.0)
