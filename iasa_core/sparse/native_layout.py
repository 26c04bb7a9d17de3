"""Where the video tokens sit in a ComfyUI native Wan forward: token grid, extra tokens, window, step.

Read from what a diffusion-model wrapper sees (the latent ``x`` and the forward's arguments) and from
``transformer_options``; pure Python on tensors' shapes, no ComfyUI import. A layout that cannot be mapped
carries the reason in ``problem`` (the attention patch then stays dense and says so once).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# Wan classes of ComfyUI whose self-attention sequence we can map, with the latent frames each prepends in
# time before the video (AnimateWanModel: WanAnimateToVideo puts the reference image's latent first).
LEADING_FRAMES = {"WanModel": 0, "VaceWanModel": 0, "CameraWanModel": 0, "AnimateWanModel": 1}
# Not mapped: WanModel_S2V and HumoWanModel append reference/motion tokens whose count and order
# depend on their conditioning; they stay dense with a warning rather than risk a wrong mask.


@dataclass(frozen=True)
class TokenLayout:
    """One forward's self-attention sequence: ``prefix`` dense tokens, the video grid, ``suffix`` dense tokens."""

    frames: int = 0  # latent frames of video tokens in this forward
    rows: int = 0  # patch rows
    cols: int = 0  # patch columns
    first_frame: int = 0  # the first of those latent frames in the whole video (context windows)
    prefix: int = 0
    suffix: int = 0
    cross_lengths: tuple[int, ...] = ()  # key lengths of this forward's cross-attention (text, CLIP)
    step: int | None = None  # sampling step (index into the sampler's sigmas), None when unknown
    problem: str = ""  # non-empty: the sequence cannot be mapped, and why

    @property
    def video_tokens(self) -> int:
        """frames * rows * cols."""
        return self.frames * self.rows * self.cols

    @property
    def seq_len(self) -> int:
        """Tokens of the self-attention sequence."""
        return self.prefix + self.video_tokens + self.suffix


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _cells(size: int, patch: int) -> int:
    return math.ceil(size / patch)  # ComfyUI pads the latent to the patch size


def sampling_step(transformer_options: Mapping[str, Any]) -> int | None:
    """Index of the current sigma in the sampler's ``sample_sigmas`` (None when ComfyUI gives neither)."""
    sigmas, current = transformer_options.get("sample_sigmas"), transformer_options.get("sigmas")
    if not isinstance(sigmas, torch.Tensor) or not isinstance(current, torch.Tensor) or current.numel() == 0:
        return None
    hit = torch.isclose(sigmas.float().cpu(), current.reshape(-1)[0].float().cpu(), rtol=1e-4)
    idx = torch.nonzero(hit).flatten()
    return int(idx[0]) if len(idx) else None


def _window_frames(transformer_options: Mapping[str, Any], frames: int, leading: int
                   ) -> tuple[int, int, int] | str:
    """(leading frames in this forward, video frames, first video latent frame), or the reason it fails."""
    window = transformer_options.get("context_window")
    if window is None:
        return leading, frames - leading, 0
    index = getattr(window, "index_list", None)
    if getattr(window, "dim", 2) != 2 or index is None:
        return "a context window over another axis than latent time"
    index = [int(i) for i in index]
    if len(index) != frames:
        return f"a context window of {len(index)} frames for a latent of {frames}"
    lead = 0
    while lead < len(index) and index[lead] < leading:
        lead += 1
    video = [i - leading for i in index[lead:]]
    if any(i < leading for i in index[lead:]) or not video:
        return "a context window that mixes reference frames into the video"
    if video != list(range(video[0], video[0] + len(video))):
        return "a context window whose latent frames are not consecutive (looped or strided)"
    return lead, len(video), video[0]


def layout_from_forward(diffusion_model: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
                        transformer_options: Mapping[str, Any]) -> TokenLayout:
    """The layout of ``WanModel.forward(x, timestep, context, clip_fea, time_dim_concat, transformer_options,
    **kwargs)`` as a DIFFUSION_MODEL wrapper sees its arguments."""
    step = sampling_step(transformer_options)
    name = type(diffusion_model).__name__
    if name not in LEADING_FRAMES:
        return TokenLayout(step=step, problem=f"{name} is not a Wan model this patch can map")
    x = _arg(args, kwargs, 0, "x")
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        return TokenLayout(step=step, problem=f"{name} got a latent that is not (batch, channels, frames, h, w)")
    pt, ph, pw = getattr(diffusion_model, "patch_size", (1, 2, 2))
    t, rows, cols = _cells(x.shape[2], pt), _cells(x.shape[3], ph), _cells(x.shape[4], pw)
    cross = []
    context, clip_fea = _arg(args, kwargs, 2, "context"), _arg(args, kwargs, 3, "clip_fea")
    for c in (context, clip_fea):
        if isinstance(c, torch.Tensor) and c.ndim >= 2:
            cross.append(int(c.shape[-2]))
    if isinstance(context, torch.Tensor) and isinstance(clip_fea, torch.Tensor) and context.ndim >= 2:
        cross.append(int(context.shape[-2] + clip_fea.shape[-2]))
    suffix = 0
    concat = _arg(args, kwargs, 4, "time_dim_concat")
    if isinstance(concat, torch.Tensor):  # frames concatenated after the video in time (dense)
        suffix = _cells(concat.shape[2], pt) * rows * cols
    prefix = 0
    ref = kwargs.get("reference_latent")
    if isinstance(ref, torch.Tensor) and getattr(diffusion_model, "ref_conv", None) is not None:
        prefix = _cells(ref.shape[-2], ph) * _cells(ref.shape[-1], pw)  # one ref_conv frame before the video
    found = _window_frames(transformer_options, t, LEADING_FRAMES[name])
    if isinstance(found, str):
        return TokenLayout(step=step, problem=found)
    lead, frames, first = found
    if frames < 1:
        return TokenLayout(step=step, problem=f"{name} got no video frames after its {lead} reference frame(s)")
    return TokenLayout(frames=frames, rows=rows, cols=cols, first_frame=first, prefix=prefix + lead * rows * cols,
                       suffix=suffix, cross_lengths=tuple(sorted(set(cross))), step=step)


def check_grid_sizes(layout: TokenLayout, transformer_options: Mapping[str, Any]) -> TokenLayout:
    """``layout`` checked against a newer core's ``transformer_options["grid_sizes"]`` (frames, h, w in patches).

    The core's grid wins over our reading of the latent: where they disagree the layout gets a problem
    (dense), because the wrapper's extra-token accounting would no longer be trustworthy."""
    grid = transformer_options.get("grid_sizes")
    if grid is None or layout.problem:
        return layout
    try:
        frames, rows, cols = (int(v) for v in (grid.tolist() if isinstance(grid, torch.Tensor) else grid))
    except (TypeError, ValueError):
        return dataclasses.replace(layout, problem=f"grid_sizes {grid!r} is not (frames, h, w)")
    hw = rows * cols
    covered = layout.video_tokens + layout.prefix + layout.suffix
    if (rows, cols) != (layout.rows, layout.cols) or frames < layout.frames or frames * hw > covered:
        return dataclasses.replace(layout, problem=(
            f"the core's grid_sizes {(frames, rows, cols)} disagree with the latent ({layout.frames} video "
            f"frames of {layout.rows}x{layout.cols} patches)"))
    return layout
