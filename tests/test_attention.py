"""Every backend reproduces the dense reference (fp32, 1e-5), in both modes, any token count."""

import logging
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sparse import TokenGrid, build_plan, dense_plan
from iasa_core.sparse.attention import available_backends, clear_cache, sparse_attention
from iasa_core.sparse.backends.flashinfer import bsr_mask
from iasa_core.sparse.backends.flex import flex_sparse_attention

TOL = 1e-5
# (size, frames, block): S = 5*6*8 = 240 is a multiple of 16; S = 4*5*7 = 140 is not;
# 64x64x5 at block 128 gives S = 32, a single partial block.
SHAPES = [((96, 128), 17, 16), ((80, 112), 13, 16), ((64, 64), 5, 128), ((96, 128), 17, 32)]


def _reference(q, k, v, mask):
    """Masked softmax attention in float64, written out."""
    qd, kd, vd = (t.double().transpose(1, 2) for t in (q, k, v))
    scores = qd @ kd.transpose(-1, -2) / qd.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ vd).transpose(1, 2)


def _qkv(s, heads=3, dim=16, batch=2, grad=False):
    return [torch.randn(batch, s, heads, dim, requires_grad=grad) for _ in range(3)]


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("mode", ["exact", "pooled"])
@pytest.mark.parametrize("size,frames,bs", SHAPES)
def test_backends_match_dense_reference(mode, size, frames, bs, background):
    plan = build_plan(synthetic_keypoints(frames, *size, seed=1), size, top_k=2, block_size=bs, mode=mode,
                      background=background)
    q, k, v = _qkv(plan.seq_len)
    ref = _reference(q, k, v, plan.token_mask())
    dense = sparse_attention(q, k, v, plan, backend="dense")
    assert (dense.double() - ref).abs().max() <= TOL
    gather = sparse_attention(q, k, v, plan, backend="gather")
    assert gather.shape == q.shape
    assert (gather.double() - ref).abs().max() <= TOL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
        flex = flex_sparse_attention(q, k, v, plan, compiled=False)
    assert (flex.double() - ref).abs().max() <= TOL


def test_sparse_output_differs_from_full_attention():
    """Guard against a backend silently ignoring the plan."""
    plan = build_plan(synthetic_keypoints(17, 96, 128, seed=1), (96, 128), top_k=1, block_size=16)
    q, k, v = _qkv(plan.seq_len)
    full = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
    assert (sparse_attention(q, k, v, plan, backend="gather") - full).abs().max() > 1e-2


@pytest.mark.parametrize("mode", ["exact", "pooled"])
def test_gather_gradients_match_dense(mode):
    plan = build_plan(synthetic_keypoints(13, 80, 112, seed=4), (80, 112), top_k=2, block_size=16, mode=mode)
    q, k, v = _qkv(plan.seq_len, grad=True)
    w = torch.randn(2, plan.seq_len, 3, 16)
    grads = []
    for backend in ("dense", "gather"):
        (sparse_attention(q, k, v, plan, backend=backend) * w).sum().backward()
        grads.append([t.grad.clone() for t in (q, k, v)])
        for t in (q, k, v):
            t.grad = None
    for gd, gg in zip(*grads, strict=True):
        assert (gd - gg).abs().max() <= TOL


def test_compiled_flex_matches_reference():
    pytest.importorskip("torch._inductor")
    from iasa_core.sparse.backends.flex import compiler_available

    if not compiler_available(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile on CPU")
    plan = build_plan(synthetic_keypoints(13, 80, 112, seed=2), (80, 112), top_k=2, block_size=16)
    q, k, v = _qkv(plan.seq_len, batch=1)
    out = flex_sparse_attention(q, k, v, plan, compiled=True)
    assert (out.double() - _reference(q, k, v, plan.token_mask())).abs().max() <= TOL


def test_dense_plan_equals_unmasked_attention():
    plan = dense_plan(TokenGrid(9, 64, 96), block_size=16)
    q, k, v = _qkv(plan.seq_len)
    full = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
    assert (sparse_attention(q, k, v, plan, backend="gather") - full).abs().max() <= TOL


def test_auto_uses_gather_on_cpu_and_logs_once(caplog):
    clear_cache()
    plan = build_plan(synthetic_keypoints(9, 64, 96, seed=0), (64, 96), top_k=1, block_size=16)
    q, k, v = _qkv(plan.seq_len)
    with caplog.at_level(logging.INFO, logger="iasa_core.sparse"):
        a = sparse_attention(q, k, v, plan)
        sparse_attention(q, k, v, plan)
    msgs = [r.getMessage() for r in caplog.records if "backend" in r.getMessage()]
    assert msgs == ["sparse attention backend: gather (cpu, torch.float32)"]
    assert torch.equal(a, sparse_attention(q, k, v, plan, backend="gather"))


def test_clear_errors():
    plan = build_plan(synthetic_keypoints(9, 64, 96, seed=0), (64, 96), top_k=1, block_size=16)
    q, k, v = _qkv(plan.seq_len)
    with pytest.raises(ValueError, match="plan was built for 72"):
        sparse_attention(q[:, :50], k[:, :50], v[:, :50], plan)
    with pytest.raises(ValueError, match="unknown attention backend"):
        sparse_attention(q, k, v, plan, backend="magic")
    with pytest.raises(ValueError, match=r"\(batch, tokens, heads, head_dim\)"):
        sparse_attention(q[0], k[0], v[0], plan)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            sparse_attention(q, k, v, plan, backend="flashinfer")
        assert "CUDA" in available_backends("cpu")["flashinfer"]


def test_flashinfer_bsr_mask_encodes_the_plan():
    """What the FlashInfer backend hands to plan(): BSR + (nnz, R, C) mask == the token mask."""
    for mode in ("exact", "pooled"):
        plan = build_plan(synthetic_keypoints(13, 80, 112, seed=3), (80, 112), top_k=2, block_size=16,
                          mode=mode)
        mask = bsr_mask(plan, torch.device("cpu"))
        assert mask is not None  # S = 140 is not a multiple of 16: padded keys must be masked
        nb, bs, s = plan.num_blocks, plan.block_size, plan.seq_len
        dense = np.zeros((nb * bs, nb * bs), dtype=bool)
        for r in range(nb):
            for j in range(plan.indptr[r], plan.indptr[r + 1]):
                c = plan.indices[j]
                dense[r * bs:(r + 1) * bs, c * bs:(c + 1) * bs] = mask[j].numpy()
        np.testing.assert_array_equal(dense[:s, :s], plan.token_mask()[plan.perm][:, plan.perm].numpy())
        assert not dense[:, s:].any()
    aligned = build_plan(synthetic_keypoints(17, 96, 128, seed=3), (96, 128), top_k=2, block_size=16,
                         mode="pooled")
    assert bsr_mask(aligned, torch.device("cpu")) is None  # whole blocks, no padding: no mask at all


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["exact", "pooled"])
@pytest.mark.parametrize("size,frames", [((256, 256), 21), ((240, 416), 17)])
def test_flashinfer_matches_reference_in_bf16(mode, size, frames):
    why = available_backends("cuda")["flashinfer"]
    if why:
        pytest.skip(why)
    plan = build_plan(synthetic_keypoints(frames, *size, seed=1), size, top_k=2, mode=mode)
    q, k, v = (torch.randn(2, plan.seq_len, 8, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ref = _reference(q.float().cpu(), k.float().cpu(), v.float().cpu(), plan.token_mask())
    out = sparse_attention(q, k, v, plan, backend="flashinfer")
    assert out.dtype == torch.bfloat16
    assert (out.double().cpu() - ref).abs().max() <= 2e-2
    again = sparse_attention(q, k, v, plan, backend="flashinfer")  # planned once, reused
    assert torch.equal(out, again)
