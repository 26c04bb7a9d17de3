"""FlashInfer backend: BlockSparseAttentionWrapper, planned once per plan and reused by every call.

FlashInfer wants keys in whole blocks (N a multiple of C), tensors (tokens, heads, dim) without a
batch axis, fp16/bf16. The wrapper is built and planned once per (plan, device, dtype, heads,
head_dim, scale) and cached on the plan; `run` is then called per layer, step and batch item.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ..plan import SparsePlan

WORKSPACE_BYTES = 128 * 1024 * 1024
_INSTALL_HINT = ("install it with `pip install flashinfer-python` (or `pip install -e \".[cuda]\"`); its "
                 "kernels are JIT-compiled with nvcc on first use")


@functools.lru_cache(maxsize=1)
def _import_error() -> str:
    """'' when flashinfer imports, else why not (tried once: a failed import is slow to repeat)."""
    try:
        import flashinfer.sparse  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install failing on import
        return f"flashinfer is not importable ({exc}); {_INSTALL_HINT}"
    return ""


def flashinfer_available(device: torch.device | None = None) -> tuple[bool, str]:
    """Whether the FlashInfer backend can run here, and if not, why."""
    if not torch.cuda.is_available() or (device is not None and device.type != "cuda"):
        return False, "FlashInfer needs CUDA tensors on an NVIDIA GPU; use backend='gather' on CPU"
    why = _import_error()
    return not why, why


def bsr_mask(plan: SparsePlan, device: torch.device, chunk: int = 2048) -> torch.Tensor | None:
    """(nnz, R, C) bool mask in BSR order, or None when every listed block is wholly allowed."""
    rows = np.repeat(np.arange(plan.num_blocks), plan.block_mask.sum(1))
    cols = plan.indices.astype(np.int64)
    padded = plan.seq_len % plan.block_size != 0
    if not padded and plan.block_full[plan.block_mask].all():
        return None
    parts = [plan.block_token_masks(rows[i:i + chunk], cols[i:i + chunk], device)
             for i in range(0, len(rows), chunk)]
    return torch.cat(parts)


def _wrapper(plan: SparsePlan, q: torch.Tensor, num_kv_heads: int, scale: float | None):
    key = ("flashinfer", str(q.device), q.dtype, q.shape[2], num_kv_heads, q.shape[3], scale)
    if key in plan._cache:
        return plan._cache[key]
    import flashinfer.sparse

    dev = q.device
    ws_key = ("flashinfer_workspace", str(dev))
    if ws_key not in plan._cache:
        plan._cache[ws_key] = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=dev)
    wrapper = flashinfer.sparse.BlockSparseAttentionWrapper(plan._cache[ws_key], backend="auto")
    bs = plan.block_size
    wrapper.plan(
        torch.as_tensor(plan.indptr, device=dev), torch.as_tensor(plan.indices, device=dev),
        plan.seq_len, plan.num_blocks * bs, bs, bs, q.shape[2], num_kv_heads, q.shape[3],
        mask=bsr_mask(plan, dev), sm_scale=scale,
        q_data_type=q.dtype, kv_data_type=q.dtype, o_data_type=q.dtype)
    plan._cache[key] = wrapper
    return wrapper


def flashinfer_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan,
                         scale: float | None = None) -> torch.Tensor:
    """Block-sparse attention with FlashInfer kernels (CUDA, fp16/bf16, forward only)."""
    ok, why = flashinfer_available(q.device)
    if not ok:
        raise RuntimeError(f"the flashinfer backend cannot run: {why}")
    if q.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(f"the flashinfer backend takes float16 or bfloat16 tensors, got {q.dtype}; cast q, k, v "
                        "or use backend='gather'")
    wrapper = _wrapper(plan, q, k.shape[2], scale)
    perm = plan.as_tensor("perm", q.device)
    inv = plan.as_tensor("inv_perm", q.device)
    pad = plan.num_blocks * plan.block_size - plan.seq_len
    qp = q.index_select(1, perm)
    kp = F.pad(k.index_select(1, perm), (0, 0, 0, 0, 0, pad))
    vp = F.pad(v.index_select(1, perm), (0, 0, 0, 0, 0, pad))
    out = torch.stack([wrapper.run(qp[b], kp[b], vp[b]) for b in range(q.shape[0])])
    return out.index_select(1, inv)
