"""Wan's cross-attention with the prompt's zero padding folded into one key: the same output, 20x fewer keys.

Wan pads its text context to 512 tokens with zeros, and diffusers attends to every one of them. Padding rows are
identical, so their keys and values are identical too: n equal keys weigh in a softmax exactly like one key whose
logit is raised by log(n). The embedded model's prompt has 16 tokens, so its cross-attention reads 17 keys instead
of 512 (about a sixth of a CPU denoiser call went there). CPU inference only: with autograd on, or on a GPU
(whose fused kernels make the padding cheap), diffusers' own processor runs, so training computes what it
always did.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TEXT_TOKENS = 512  # diffusers' WanAttnProcessor takes the last 512 context tokens as the text (hard-coded there)


def padding_run(text: torch.Tensor) -> int:
    """How many trailing rows of ``text`` (B, L, D) equal its last row, in every batch item."""
    same = (text == text[:, -1:]).all(dim=-1).all(dim=0)  # (L,)
    differs = torch.nonzero(~same)
    return int(same.shape[0] - (int(differs[-1]) + 1 if len(differs) else 0))


def _weighted_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, last: float) -> torch.Tensor:
    """Attention (B, heads, S, D) whose last key's logit is raised by ``last``.

    The raise is log(512 - tokens), about 6: a bfloat16 mask would round it by up to 0.016, a 1.6 % error on
    what is often most of the softmax's weight, so other dtypes run in float32 (a handful of keys: cheap)."""
    bias = torch.zeros(key.shape[2], dtype=torch.float32, device=query.device)
    bias[-1] = last
    if query.dtype == torch.float32:
        return F.scaled_dot_product_attention(query, key, value, attn_mask=bias.view(1, 1, 1, -1))
    logits = query.float() @ key.float().transpose(-1, -2) * query.shape[-1] ** -0.5 + bias
    return (logits.softmax(-1) @ value.float()).to(query.dtype)


class CompactTextAttnProcessor:
    """A WanAttention cross-attention processor that attends to the text's padding as one weighted key."""

    def __init__(self, fallback) -> None:
        self.fallback = fallback  # diffusers' processor: autograd, masks, or nothing to fold

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None,
                 rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        context = encoder_hidden_states
        if (torch.is_grad_enabled() or context is None or attention_mask is not None or rotary_emb is not None
                or context.shape[1] < TEXT_TOKENS or hidden_states.device.type != "cpu"):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        image_tokens = context.shape[1] - TEXT_TOKENS if attn.add_k_proj is not None else 0
        text = context[:, image_tokens:]
        run = padding_run(text)
        if run < 2:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        text = text[:, :text.shape[1] - run + 1]  # the last row stands for the whole run
        if attn.fused_projections:
            query = attn.to_q(hidden_states)
            key, value = attn.to_kv(text).chunk(2, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(text), attn.to_v(text)
        query, key = attn.norm_q(query), attn.norm_k(key)
        heads = attn.heads
        query, key, value = (t.unflatten(2, (heads, -1)).transpose(1, 2) for t in (query, key, value))
        out = _weighted_attention(query, key, value, math.log(run))
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        if image_tokens:
            image = context[:, :image_tokens]
            if attn.fused_projections:
                key_img, value_img = attn.to_added_kv(image).chunk(2, dim=-1)
            else:
                key_img, value_img = attn.add_k_proj(image), attn.add_v_proj(image)
            key_img = attn.norm_added_k(key_img)
            key_img, value_img = (t.unflatten(2, (heads, -1)).transpose(1, 2) for t in (key_img, value_img))
            out_img = F.scaled_dot_product_attention(query, key_img, value_img)
            out = out + out_img.transpose(1, 2).flatten(2, 3).type_as(query)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def compact_text_attention(transformer: nn.Module) -> None:
    """Give every cross-attention (``attn2``) of a diffusers Wan transformer the compact processor, once."""
    for block in getattr(transformer, "blocks", []):
        attn = getattr(block, "attn2", None)
        if attn is not None and not isinstance(attn.processor, CompactTextAttnProcessor):
            attn.set_processor(CompactTextAttnProcessor(attn.processor))
