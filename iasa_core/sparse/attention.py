"""One call for input-aware sparse attention over any backend: ``sparse_attention(q, k, v, plan)``."""

from __future__ import annotations

import logging

import torch

from .backends.dense import dense_attention
from .backends.flashinfer import flashinfer_attention, flashinfer_available
from .backends.flex import flex_available, flex_sparse_attention
from .backends.gather import gather_attention
from .plan import SparsePlan

log = logging.getLogger("iasa_core.sparse")

BACKENDS = ("dense", "gather", "flex", "flashinfer")
_logged_choices: set[tuple] = set()


def clear_cache() -> None:
    """Forget which automatic choices were already logged."""
    _logged_choices.clear()


def available_backends(device: torch.device | str = "cpu") -> dict[str, str]:
    """{backend: "" if it can run on ``device`` else the reason it cannot}."""
    device = torch.device(device)
    out = {"dense": "", "gather": ""}
    out["flex"] = flex_available()[1]
    out["flashinfer"] = flashinfer_available(device)[1]
    return out


def choose_backend(q: torch.Tensor, needs_grad: bool) -> str:
    """The backend ``auto`` uses for these inputs (FlashInfer on CUDA if possible, else gather)."""
    if (not needs_grad and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
            and flashinfer_available(q.device)[0]):
        return "flashinfer"
    return "gather"


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.ndim != 4:
            raise ValueError(f"{name} must be (batch, tokens, heads, head_dim); got shape {tuple(t.shape)}")
    if q.shape[1] != plan.seq_len or k.shape[1] != plan.seq_len or v.shape[1] != plan.seq_len:
        raise ValueError(
            f"q/k/v have {q.shape[1]}/{k.shape[1]}/{v.shape[1]} tokens but the plan was built for "
            f"{plan.seq_len} ({plan.grid.latent_frames} latent frames x {plan.grid.tokens_per_frame} tokens, "
            f"{plan.grid.num_frames} frames at {plan.grid.height}x{plan.grid.width}); build the plan for this "
            "video size and frame count")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} do not fit together")


def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: SparsePlan,
                     backend: str = "auto", scale: float | None = None) -> torch.Tensor:
    """Attention of q over k, v restricted to ``plan``; tensors (B, S, heads, head_dim), original order."""
    _check(q, k, v, plan)
    if backend == "auto":
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        backend = choose_backend(q, needs_grad)
        key = (backend, q.device.type, q.dtype)
        if key not in _logged_choices:
            _logged_choices.add(key)
            log.info("sparse attention backend: %s (%s, %s)", backend, q.device.type, q.dtype)
    if backend == "dense":
        return dense_attention(q, k, v, plan, scale)
    if backend == "gather":
        return gather_attention(q, k, v, plan, scale)
    if backend == "flex":
        return flex_sparse_attention(q, k, v, plan, scale)
    if backend == "flashinfer":
        return flashinfer_attention(q, k, v, plan, scale)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {('auto',) + BACKENDS}")
