"""Reference backend: SDPA over all tokens with the plan's boolean token mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..plan import SparsePlan


def token_mask_on(plan: SparsePlan, device: torch.device) -> torch.Tensor:
    """The plan's (S, S) mask on ``device``, built once per plan and device."""
    key = ("token_mask", str(device))
    if key not in plan._cache:
        plan._cache[key] = plan.token_mask(device)
    return plan._cache[key]


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan | None,
                    scale: float | None = None) -> torch.Tensor:
    """SDPA with the plan's token mask (no mask at all when ``plan`` is None)."""
    mask = None if plan is None else token_mask_on(plan, q.device)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                         attn_mask=mask, scale=scale)
    return out.transpose(1, 2)
