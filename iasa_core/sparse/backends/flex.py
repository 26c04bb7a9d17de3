"""FlexAttention backend: the plan's blocks as a BlockMask (kv blocks listed, no mask_mod search)."""

from __future__ import annotations

import functools
import shutil

import numpy as np
import torch

from ..plan import SparsePlan, pair_rule


def flex_available() -> tuple[bool, str]:
    """Whether FlexAttention with BlockMask.from_kv_blocks exists in this torch."""
    try:
        from torch.nn.attention.flex_attention import BlockMask  # noqa: F401
    except ImportError:
        return False, f"torch {torch.__version__} has no FlexAttention; install torch>=2.5"
    return True, ""


def compiler_available(device: torch.device) -> bool:
    """torch.compile can build kernels here (Triton on CUDA, a C++ compiler on CPU)."""
    if device.type == "cuda":
        return True
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@functools.lru_cache(maxsize=4)
def _flex_fn(compiled: bool):
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False) if compiled else flex_attention


def clear_cache() -> None:
    """Forget compiled FlexAttention functions."""
    _flex_fn.cache_clear()


def _kv_lists(mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query block, the number of key blocks and their indices (padded), as int32 (1, 1, ...)."""
    num = mask.sum(1).astype(np.int32)
    # a stable sort of "not listed" puts each row's listed columns first, in ascending order
    idx = np.argsort(~mask, axis=1, kind="stable").astype(np.int32)
    return torch.from_numpy(num)[None, None], torch.from_numpy(idx)[None, None]


def block_mask_for(plan: SparsePlan, device: torch.device):
    """The plan as a FlexAttention BlockMask in permuted token order (built once per device)."""
    key = ("flex_block_mask", str(device))
    if key in plan._cache:
        return plan._cache[key]
    from torch.nn.attention.flex_attention import BlockMask

    partial = plan.block_mask & ~plan.block_full
    full = plan.block_full
    num_p, idx_p = _kv_lists(partial)
    num_f, idx_f = _kv_lists(full)
    s = plan.seq_len
    perm = torch.as_tensor(plan.perm, device=device)
    frame = torch.as_tensor(plan.token_frame, device=device)[perm]
    region = torch.as_tensor(plan.token_region, device=device)[perm]
    allowed = torch.as_tensor(plan.frame_allowed, device=device)
    local, background = plan.config.local, plan.config.background
    pooled = plan.mode == "pooled"
    blocks = torch.as_tensor(plan.block_mask, device=device)
    bs = plan.block_size

    # Compiled kernels skip mask_mod on full blocks, but eager FlexAttention ignores the block
    # lists and evaluates mask_mod everywhere, so it must state the whole rule in both modes.
    def mask_mod(b, h, q_idx, kv_idx):
        if pooled:
            return blocks[q_idx // bs, kv_idx // bs]
        return pair_rule(frame[q_idx], frame[kv_idx], region[q_idx], region[kv_idx], allowed, local, background)

    bm = BlockMask.from_kv_blocks(
        num_p.to(device), idx_p.to(device), num_f.to(device), idx_f.to(device),
        BLOCK_SIZE=plan.block_size, mask_mod=mask_mod, seq_lengths=(s, s))
    plan._cache[key] = bm
    return bm


def flex_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan,
                          scale: float | None = None, compiled: bool | None = None) -> torch.Tensor:
    """Block-sparse attention through FlexAttention; compiled when a compiler is available."""
    ok, why = flex_available()
    if not ok:
        raise RuntimeError(f"the flex backend cannot run: {why}")
    if compiled is None:
        compiled = compiler_available(q.device)
    perm = plan.as_tensor("perm", q.device)
    inv = plan.as_tensor("inv_perm", q.device)
    qp, kp, vp = (t.index_select(1, perm).transpose(1, 2) for t in (q, k, v))
    out = _flex_fn(bool(compiled))(qp, kp, vp, block_mask=block_mask_for(plan, q.device), scale=scale)
    return out.transpose(1, 2).index_select(1, inv)
