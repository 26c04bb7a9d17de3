"""Input-aware sparse self-attention for diffusers' Wan blocks, enabled for the span of a ``with`` block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..sparse.attention import sparse_attention
from ..sparse.plan import SparsePlan


@dataclass
class SparseState:
    """The plan (and backend) shared by every patched layer; one object, so one plan serves all layers and steps."""

    plan: SparsePlan
    backend: str = "auto"
    calls: int = 0


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved rotary embedding on (B, S, H, D); cos/sin are (1, S, 1, D) with pairs repeated."""
    x_even, x_odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.stack([x_even * c - x_odd * s, x_even * s + x_odd * c], dim=-1).flatten(-2)
    return out.type_as(x)


class SparseSelfAttnProcessor:
    """Self-attention of a WanAttention module, routed through ``sparse_attention`` with the shared plan."""

    def __init__(self, state: SparseState) -> None:
        self.state = state

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise RuntimeError("the sparse processor serves self-attention only (attn1) and takes no mask")
        if getattr(attn, "fused_projections", False):
            q, k, v = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        q, k = attn.norm_q(q), attn.norm_k(k)
        q, k, v = (t.unflatten(2, (attn.heads, -1)) for t in (q, k, v))
        if rotary_emb is not None:
            q = apply_rotary(q, *rotary_emb)
            k = apply_rotary(k, *rotary_emb)
        out = sparse_attention(q, k, v, self.state.plan, backend=self.state.backend)
        self.state.calls += 1
        out = out.flatten(2, 3).type_as(q)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _self_attention_modules(model: nn.Module) -> list[nn.Module]:
    transformer = getattr(model, "transformer", model)
    blocks = getattr(transformer, "blocks", None)
    if blocks is None:
        raise TypeError(f"{type(model).__name__} has no Wan transformer blocks to patch")
    return [block.attn1 for block in blocks]


@contextlib.contextmanager
def sparse_attention_enabled(model: nn.Module, plan: SparsePlan | None, backend: str = "auto"
                             ) -> Iterator[SparseState | None]:
    """Within the block, every self-attention of ``model`` uses ``plan``; the original processors come back after.

    ``plan=None`` leaves the model dense, so callers need no branch for "sparse off".
    """
    if plan is None:
        yield None
        return
    modules = _self_attention_modules(model)
    state = SparseState(plan, backend)
    saved = [m.processor for m in modules]
    try:
        for m in modules:
            m.set_processor(SparseSelfAttnProcessor(state))
        yield state
    finally:
        for m, proc in zip(modules, saved, strict=True):
            m.set_processor(proc)
