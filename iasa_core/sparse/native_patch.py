"""IASA sparse self-attention in ComfyUI's native Wan models, through the per-model attention override.

ComfyUI (>= 0.3.60) calls ``transformer_options["optimized_attention_override"](func, q, k, v, heads, **kw)``
for every attention of a model (``comfy/ldm/modules/attention.py::wrap_attn``); q/k/v are (B, L, heads*dim)
unless ``skip_reshape`` (then (B, heads, L, dim)), and the result keeps the layout ``func`` would return.
A DIFFUSION_MODEL wrapper reads each forward's token layout (:mod:`.native_layout`) into
``transformer_options``; the override applies the IASA plan of that layout to self-attention and hands
everything else (cross-attention, dense steps and blocks, layouts it cannot map) to the override that was on
the model before, or to ``func``. Nothing here imports ComfyUI: :func:`install` takes a ModelPatcher.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..pose.sequence import PoseSequence
from ..sampling.windows import Window, latent_frames
from .attention import BACKENDS, available_backends, choose_backend, sparse_attention
from .grid import SPATIAL_STRIDE
from .native_layout import TokenLayout, check_grid_sizes, layout_from_forward
from .padded import PADDED_BACKENDS, PaddedPlan
from .plan import PlanConfig, SparsePlan, _as_keypoints, build_plan

log = logging.getLogger("iasa_core.sparse")

OVERRIDE_KEY = "optimized_attention_override"
LAYOUT_KEY = "iasa_token_layout"  # set by the wrapper for the span of one forward
WRAPPER_TYPE = "diffusion_model"  # comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
WRAPPER_KEY = "iasa_sparse_attention"
BACKEND_CHOICES = ("auto",) + BACKENDS
MAX_CACHED_PLANS = 8  # one per context window in flight is enough; old windows' plans are dropped


@dataclass(frozen=True)
class PatchOptions:
    """The plan's options and when to stay dense."""

    plan: PlanConfig = field(default_factory=PlanConfig)
    backend: str = "auto"
    dense_steps: int = 0  # the first N sampling steps of each sampler run are dense
    dense_first_blocks: int = 0  # the first N transformer blocks are dense
    dense_last_blocks: int = 0  # the last N transformer blocks are dense

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {BACKEND_CHOICES}; got {self.backend!r}")
        for name in ("dense_steps", "dense_first_blocks", "dense_last_blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")


class IASAAttentionPatch:
    """The override and the forward wrapper of one patched model; plans are cached per (grid, pose window)."""

    def __init__(self, poses: PoseSequence, options: PatchOptions | None = None,
                 previous: Callable | None = None) -> None:
        self.poses = poses
        self.options = options or PatchOptions()
        self.previous = previous  # the override that was on the model (e.g. SageAttention), or None
        self._plans: OrderedDict[tuple, SparsePlan | PaddedPlan | str] = OrderedDict()
        self._warned: set[str] = set()
        self._available: dict[str, dict[str, str]] = {}  # device -> {backend: why it cannot run}
        self.sparse_calls = 0  # self-attention calls that ran the plan (tests and logs read it)
        self.dense_calls = 0  # calls handed to the previous override / func

    # ComfyUI deep-copies model_options on every clone; one patch (and its plan cache) serves all clones.
    def __deepcopy__(self, memo: dict) -> IASAAttentionPatch:
        return self

    # ---- the wrapper ----------------------------------------------------------------------------------
    def forward_wrapper(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        """DIFFUSION_MODEL wrapper: record this forward's token layout in transformer_options, then run it."""
        options = args[5] if len(args) > 5 else kwargs.get("transformer_options")
        if not isinstance(options, dict):
            return executor(*args, **kwargs)
        layout = layout_from_forward(getattr(executor, "class_obj", None), args, kwargs, options)
        missing = object()
        saved = options.get(LAYOUT_KEY, missing)
        options[LAYOUT_KEY] = layout
        try:
            return executor(*args, **kwargs)
        finally:
            if saved is missing:
                options.pop(LAYOUT_KEY, None)
            else:
                options[LAYOUT_KEY] = saved

    # ---- the override ---------------------------------------------------------------------------------
    def __call__(self, func: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """optimized_attention_override: sparse for mapped self-attention, the previous path otherwise."""
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs.get("heads")
        skip_reshape = bool(kwargs.get("skip_reshape", False))
        options = kwargs.get("transformer_options") or {}
        token_axis = 2 if skip_reshape else 1
        lengths = (q.shape[token_axis], k.shape[token_axis], v.shape[token_axis])
        target = self._sparse_target(lengths, options, kwargs)
        if target is None:
            return self._pass(func, args, kwargs)
        out = self._sparse(q, k, v, int(heads), target, skip_reshape, bool(kwargs.get("skip_output_reshape")))
        self.sparse_calls += 1
        return out

    def _pass(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        self.dense_calls += 1
        if self.previous is not None:
            return self.previous(func, *args, **kwargs)
        return func(*args, **kwargs)

    def _warn(self, reason: str) -> None:
        if reason not in self._warned:
            self._warned.add(reason)
            log.warning("IASA sparse attention: %s; this attention stays dense (warned once)", reason)

    def _sparse_target(self, lengths: tuple[int, int, int], options: dict, kwargs: dict
                       ) -> SparsePlan | PaddedPlan | None:
        """The plan for this call, or None when it must stay dense (with one warning where that is a surprise)."""
        layout: TokenLayout | None = options.get(LAYOUT_KEY)
        lq, lk, lv = lengths
        if layout is None:
            if lq == lk == lv:
                self._warn("no token layout for this forward (the IASA wrapper did not run: not a Wan model?)")
            return None
        layout = check_grid_sizes(layout, options)
        if layout.problem:
            if lq == lk == lv:
                self._warn(layout.problem)
            return None
        if not (lq == lk == lv == layout.seq_len):
            return None  # cross-attention (text, CLIP, audio) or an attention over other tokens
        if layout.seq_len in layout.cross_lengths:
            self._warn(f"self-attention has {layout.seq_len} tokens, as many as a cross-attention; "
                       "it cannot be told apart")
            return None
        if kwargs.get("mask") is not None:
            self._warn("the core passed an attention mask to self-attention")
            return None
        if not self._sparse_now(layout, options):
            return None
        return self._plan(layout)

    def _sparse_now(self, layout: TokenLayout, options: dict) -> bool:
        o = self.options
        if o.dense_steps:
            if layout.step is None:
                self._warn("dense_steps is set but the sampler's step is unknown (no sample_sigmas)")
                return False
            if layout.step < o.dense_steps:
                return False
        if o.dense_first_blocks or o.dense_last_blocks:
            index, total = options.get("block_index"), options.get("total_blocks")
            if index is None or total is None:
                self._warn("dense first/last blocks are set but the core gives no block_index")
                return False
            if index < o.dense_first_blocks or index >= total - o.dense_last_blocks:
                return False
        return True

    # ---- plans ----------------------------------------------------------------------------------------
    def _plan(self, layout: TokenLayout) -> SparsePlan | PaddedPlan | None:
        key = (layout.frames, layout.rows, layout.cols, layout.first_frame, layout.prefix, layout.suffix)
        if key not in self._plans:
            self._plans[key] = self._build(layout)
            while len(self._plans) > MAX_CACHED_PLANS:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        found = self._plans[key]
        if isinstance(found, str):
            self._warn(found)
            return None
        return found

    def _build(self, layout: TokenLayout) -> SparsePlan | PaddedPlan | str:
        """The plan of the layout's pose window, or the reason there is none."""
        size = (layout.rows * SPATIAL_STRIDE, layout.cols * SPATIAL_STRIDE)  # the plan's pixels: 16 per token
        try:
            kp = _as_keypoints(self.poses, size)
        except ValueError as exc:
            return f"the poses do not fit the latent ({layout.rows}x{layout.cols} patches): {exc}"
        stop = layout.first_frame + layout.frames
        have = latent_frames(len(kp) + (-(len(kp) - 1)) % 4)  # the poses padded to 4n+1, as generation pads
        if have < stop:
            return (f"the poses cover {have} latent frames ({len(kp)} frames) but the model samples latent "
                    f"frames {layout.first_frame}..{stop - 1}; connect poses for the whole video")
        need = Window(layout.first_frame, stop).video_frames
        if need.stop > len(kp):
            kp = np.concatenate([kp, np.repeat(kp[-1:], need.stop - len(kp), axis=0)])
        plan = build_plan(kp[need], size, **asdict(self.options.plan))  # every PlanConfig field, none forgotten
        log.info("IASA plan for latent frames %d..%d at %dx%d patches: density %.3f (built in %.2f s)",
                 layout.first_frame, stop - 1, layout.rows, layout.cols, plan.density, plan.build_seconds)
        if layout.prefix or layout.suffix:
            return PaddedPlan(plan, layout.prefix, layout.suffix)
        return plan

    # ---- attention ------------------------------------------------------------------------------------
    def _backend(self, q: torch.Tensor, target: SparsePlan | PaddedPlan) -> str:
        backend = self.options.backend
        if backend != "auto":
            device = str(q.device)
            if device not in self._available:
                self._available[device] = available_backends(q.device)
            why = self._available[device].get(backend, "")
            if why:
                self._warn(f"backend {backend} cannot run on {q.device.type} ({why}); using auto")
                backend = "auto"
        if isinstance(target, PaddedPlan) and backend not in PADDED_BACKENDS:
            chosen = choose_backend(q, needs_grad=False) if backend == "auto" else backend
            if chosen not in PADDED_BACKENDS:
                log.info("IASA: %s cannot run a sequence with extra dense tokens; using gather (exact)", chosen)
                return "gather"
            return chosen
        return backend

    def _sparse(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                target: SparsePlan | PaddedPlan, skip_reshape: bool, skip_output_reshape: bool) -> torch.Tensor:
        if skip_reshape:  # (B, heads, L, dim)
            q4, k4, v4 = (t.transpose(1, 2) for t in (q, k, v))
        else:  # (B, L, heads * dim)
            b, length, width = q.shape
            q4, k4, v4 = (t.reshape(b, t.shape[1], heads, width // heads) for t in (q, k, v))
        out = sparse_attention(q4, k4, v4, target, backend=self._backend(q, target))  # (B, L, heads, dim)
        if skip_output_reshape:
            return out.transpose(1, 2)
        return out.reshape(out.shape[0], out.shape[1], -1)


def install(model_patcher: Any, poses: PoseSequence, options: PatchOptions | None = None) -> IASAAttentionPatch:
    """Put the IASA override and layout wrapper on ``model_patcher`` (a clone: it is changed in place).

    An override already there is kept and receives every call IASA does not make sparse; an IASA patch
    already there is replaced (its own predecessor is kept)."""
    transformer_options = model_patcher.model_options.setdefault("transformer_options", {})
    previous = transformer_options.get(OVERRIDE_KEY)
    if isinstance(previous, IASAAttentionPatch):
        previous = previous.previous
    patch = IASAAttentionPatch(poses, options, previous)
    transformer_options[OVERRIDE_KEY] = patch
    model_patcher.remove_wrappers_with_key(WRAPPER_TYPE, WRAPPER_KEY)
    model_patcher.add_wrapper_with_key(WRAPPER_TYPE, WRAPPER_KEY, patch.forward_wrapper)
    return patch
