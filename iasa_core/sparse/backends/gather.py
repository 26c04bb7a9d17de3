"""Pure-PyTorch block-sparse attention: one SDPA per group of query blocks sharing key blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..plan import SparsePlan


def _inverse_order(plan: SparsePlan, device: torch.device) -> torch.Tensor:
    """Where each original token sits in the concatenation of the groups' queries."""
    key = ("gather_inverse", str(device))
    if key not in plan._cache:
        order = torch.cat([g.q_idx for g in plan.groups(device)])
        plan._cache[key] = torch.argsort(order)
    return plan._cache[key]


def gather_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan,
                     scale: float | None = None) -> torch.Tensor:
    """Exact sparse attention by gathering each group's keys once; differentiable."""
    # Heads-major once, so every gather is a contiguous index_select along the token axis.
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    outs = []
    for g in plan.groups(q.device):
        outs.append(F.scaled_dot_product_attention(
            qh.index_select(2, g.q_idx), kh.index_select(2, g.kv_idx), vh.index_select(2, g.kv_idx),
            attn_mask=g.mask, scale=scale))
    out = torch.cat(outs, dim=2).index_select(2, _inverse_order(plan, q.device))
    return out.transpose(1, 2)
