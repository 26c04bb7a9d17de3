"""iasa_core.bench.block_pca: a linear codec on the Wan VAE's latent grid."""

from __future__ import annotations

import pytest
import torch

from iasa_core.bench import block_pca as B
from iasa_core.bench.vae import heldout_set, reconstruction_psnr


def _video(seed: int, frames: int = 9, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, frames, size, size, generator=g) * 2 - 1


def test_blocks_are_the_latent_grid_and_round_trip_exactly():
    v = _video(0)
    first, rest = B._split(v)
    assert first.shape == (2, 1, 2, 2, 192) and rest.shape == (2, 2, 2, 2, 768)
    # latent frame 1, cell (1, 0) holds video frames 1..4, rows 8..15, columns 0..7
    assert torch.equal(rest[1, 0, 1, 0].reshape(3, 4, 8, 8), v[1, :, 1:5, 8:16, 0:8])
    assert torch.equal(B._unblocks(rest, 4), v[:, :, 1:]) and torch.equal(B._unblocks(first, 1), v[:, :, :1])


def test_all_components_are_lossless_and_fewer_keep_the_most_variance():
    v = _video(1, size=64)  # 128 first-frame blocks and 256 four-frame blocks
    full = B.fit_block_pca([v], k=128)
    z = B.encode(full, v)
    assert z.shape == (2, 128, 3, 8, 8)
    assert torch.allclose(full.rest_basis @ full.rest_basis.T, torch.eye(128), atol=1e-4)
    # 128 components span the 128 centred first-frame blocks exactly
    assert torch.allclose(B.decode(full, z)[:, :, :1], v[:, :, :1], atol=1e-4)
    errors = [float((B.decode(p, B.encode(p, v)) - v).pow(2).mean()) for p in
              (B.fit_block_pca([v], k) for k in (4, 16, 64))]
    assert errors[0] > errors[1] > errors[2]
    # PCA is the best k-dimensional linear code for its own data: a random orthonormal basis does worse
    p16 = B.fit_block_pca([v], 16)
    q = torch.linalg.qr(torch.randn(768, 16, generator=torch.Generator().manual_seed(0)))[0].T
    rand = B.BlockPCA(p16.first_mean, p16.first_basis, p16.rest_mean, q.contiguous())
    rec = lambda p: B.decode(p, B.encode(p, v))[:, :, 1:]  # noqa: E731
    assert float((rec(rand) - v[:, :, 1:]).pow(2).mean()) > float((rec(p16) - v[:, :, 1:]).pow(2).mean())


def test_a_flat_world_clip_keeps_more_than_the_thumbnail_budget():
    videos, masks = heldout_set(1, frames=9)
    fit = heldout_set(1, frames=9, seed=7)[0]
    pca = B.fit_block_pca(fit, 16)
    r = reconstruction_psnr(lambda x: B.decode(pca, B.encode(pca, x)), videos, masks)
    assert B.encode(pca, videos[0]).shape == (1, 16, 3, 16, 16)
    assert 24 < r["psnr"] < 60 and r["psnr_face"] < r["psnr"]


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"1 \+ 4n"):
        B.fit_block_pca([torch.zeros(1, 3, 8, 16, 16)])
    with pytest.raises(ValueError, match="multiples of 8"):
        B.encode(B.fit_block_pca([_video(2)], 4), torch.zeros(1, 3, 9, 12, 16))
    with pytest.raises(ValueError, match="at least one video"):
        B.fit_block_pca([])
    with pytest.raises(ValueError, match="at least 16 blocks"):
        B.fit_block_pca([torch.zeros(1, 3, 5, 8, 8)], 16)
