"""Model setup shared by the training scripts: load, choose what trains, optimizers, sparse settings."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from iasa_core.model.loading import load_model
from iasa_core.model.pose_wan import PoseWanTransformer
from iasa_core.model.system import PoseWanSystem

from .config import LoraConfig, ModelSpec, OptimConfig, SparseConfig
from .lora import add_lora


def load_system(spec: ModelSpec, device: torch.device) -> PoseWanSystem:
    """Load the model a config names (frozen, fp32) and move it to ``device``."""
    prompt = None
    if spec.prompt_embeds:
        from safetensors.torch import load_file

        tensors = load_file(spec.prompt_embeds)
        if "prompt_embeds" not in tensors:
            raise ValueError(f"{spec.prompt_embeds} has no 'prompt_embeds' tensor; write the UMT5 output of your "
                             "prompt (tokens, text_dim) under that name")
        prompt = tensors["prompt_embeds"]
    system = load_model(spec.spec, search_dirs=spec.search_dirs, allow_download=spec.allow_download,
                        pose_weights=spec.pose_weights, vae=spec.vae, image_encoder=spec.image_encoder,
                        prompt_embeds=prompt, loras=[(p, float(s)) for p, s in spec.loras], seed=spec.seed)
    for key in ("pose_face", "pose_mouth"):
        if getattr(spec, key) is not None:
            system.schedule = dict(system.schedule, **{key: bool(getattr(spec, key))})
    system.to(device, torch.float32)
    return system.eval()


def load_teacher(spec: ModelSpec, device: torch.device) -> PoseWanSystem:
    """The teacher a distillation starts from (``load_system``); a missing teacher file says how to make one."""
    try:
        return load_system(spec, device)
    except FileNotFoundError:
        path = Path(spec.spec).expanduser()
        if path.suffix != ".safetensors" or path.exists():
            raise  # a preset, a repo or another missing file (a LoRA, the VAE): its own message says which
        raise FileNotFoundError(
            f"teacher.spec: the teacher model {spec.spec} does not exist ({path.resolve()}; relative paths are "
            "from the current folder). Train one first with `python -m training.finetune_teacher --config "
            "training/configs/teacher_tiny_cpu.yaml` (it writes teacher.safetensors in its run.output_dir) and "
            "set teacher.spec to that file, or give a preset name or a Hugging Face repo id") from None


def make_trainable(denoiser: PoseWanTransformer, lora: LoraConfig) -> list[nn.Parameter]:
    """Add LoRA adapters (rank > 0) or unfreeze everything (rank 0); returns the parameters to optimise."""
    denoiser.requires_grad_(False)
    if lora.rank > 0:
        add_lora(denoiser.transformer, lora.rank, lora.alpha, lora.targets)
        for name, p in denoiser.named_parameters():
            if ".lora_down." in name or ".lora_up." in name:
                p.requires_grad_(True)
        if lora.train_pose_encoder:
            denoiser.pose_encoder.requires_grad_(True)
            denoiser.ref_pose_encoder.requires_grad_(True)
            if denoiser.block_pose_proj is not None:
                denoiser.block_pose_proj.requires_grad_(True)
    else:
        denoiser.requires_grad_(True)
    denoiser.train()
    return [p for p in denoiser.parameters() if p.requires_grad]


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps: linear warm-up, then constant or cosine."""
    warm = max(0, int(cfg.warmup_steps))
    if warm and step < warm:
        return (step + 1) / warm
    if cfg.decay == "cosine" and total_steps > warm:
        progress = min(1.0, (step - warm) / (total_steps - warm))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


POSE_MODULES = ("pose_encoder.", "ref_pose_encoder.", "block_pose_proj.")  # what optim.pose_lr_scale speeds up


def param_groups(params: list[nn.Parameter], cfg: OptimConfig, denoiser: nn.Module | None = None
                 ) -> list[dict[str, Any]]:
    """AdamW groups: the pose modules of ``denoiser`` at ``lr * pose_lr_scale`` when that is not 1, the rest at lr."""
    if cfg.pose_lr_scale == 1.0:
        return [{"params": params, "lr": cfg.lr}]
    if denoiser is None:
        raise ValueError("optim.pose_lr_scale needs the denoiser to tell its pose modules apart")
    pose = {id(p) for name, p in denoiser.named_parameters() if name.startswith(POSE_MODULES)}
    groups = [{"params": [p for p in params if id(p) not in pose], "lr": cfg.lr},
              {"params": [p for p in params if id(p) in pose], "lr": cfg.lr * cfg.pose_lr_scale}]
    return [g for g in groups if g["params"]]


def make_optimizer(params: list[nn.Parameter], cfg: OptimConfig, total_steps: int = 0,
                   denoiser: nn.Module | None = None) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW and its schedule (``total_steps``: the run's length, for the cosine decay; ``denoiser``: whose
    pose modules ``cfg.pose_lr_scale`` applies to)."""
    if not params:
        raise ValueError("nothing to train: the config freezes every weight")
    opt = torch.optim.AdamW(param_groups(params, cfg, denoiser), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg, total_steps))
    return opt, sched


def sparse_settings(system: PoseWanSystem, cfg: SparseConfig) -> dict[str, Any] | None:
    """The plan options training uses (the model's stored ones with the config's overrides), or None if dense."""
    if not cfg.enabled:
        return None
    out = dict(system.sparse)
    out.update(cfg.settings)
    return out


def step_sparse(sparse: dict[str, Any] | None, cfg: SparseConfig, seed: int, k: int) -> dict[str, Any] | None:
    """The attention one training sample uses: dense, global mask only, or full IASA, drawn per sample index."""
    if sparse is None or (cfg.dense_fraction <= 0 and cfg.global_fraction <= 0):
        return sparse
    u = float(torch.rand(1, generator=torch.Generator().manual_seed(seed * 1_000_003 + k + 17)))
    if u < cfg.dense_fraction:
        return None
    if u < cfg.dense_fraction + cfg.global_fraction:
        return dict(sparse, local=False)
    return sparse


def shared_copy(module: nn.Module, share: bool = True) -> nn.Module:
    """A deep copy of a posed denoiser that shares (does not duplicate) its transformer weights when ``share``.

    Teacher, critic and student all start from one model; with LoRA the transformer's base weights never train
    and only the adapters differ, so sharing them keeps one copy of a 14B model in memory instead of three. The
    small pose encoders are always copied, since they may train.
    """
    memo: dict[int, object] = {}
    if share:
        for name, p in module.named_parameters():
            if name.startswith("transformer."):
                memo[id(p)] = p
    return copy.deepcopy(module, memo)


def frozen_copy(module: nn.Module, share: bool = True) -> nn.Module:
    """A copy with gradients off, in eval mode (see ``shared_copy``)."""
    out = shared_copy(module, share)
    out.requires_grad_(False)
    return out.eval()


def cast_frozen(module: nn.Module, dtype: str) -> None:
    """Store the frozen weights in ``dtype`` (bf16 halves a 14B base); the trained ones stay fp32."""
    if dtype == "fp32":
        return
    if dtype != "bf16":
        raise ValueError(f"run.frozen_dtype must be 'fp32' or 'bf16'; got {dtype!r}")
    for p in module.parameters():
        if not p.requires_grad:
            p.data = p.data.to(torch.bfloat16)


def output_path(output_dir: str, path: str) -> Path:
    """``path`` as given when absolute, else inside the run's output folder."""
    p = Path(path)
    return p if p.is_absolute() else Path(output_dir) / p


def enable_checkpointing(denoiser: PoseWanTransformer, on: bool) -> None:
    """Gradient checkpointing of the Wan blocks (recomputed in backward; see the note in the step functions)."""
    if on and denoiser.block_pose_proj is not None:
        # The per-block pose maps run in forward pre-hooks that read the pose of the call in flight; a block
        # recomputed during backward would run without it and give silently wrong gradients.
        raise ValueError("run.gradient_checkpointing cannot be used with a model whose pose enters every block "
                         "(config pose_blocks); set run.gradient_checkpointing: false")
    if on:
        denoiser.transformer.enable_gradient_checkpointing()


CLIP_SHAPE = ("height", "width", "frames", "fps")  # what every dataset of one run must agree on


def open_dataset(root: str, more_roots: Sequence[str] = ()) -> Any:
    """The prepared dataset at ``root`` (``python -m training.prepare --out ROOT``), followed by the clips of
    ``more_roots`` (``data.more_roots``) when given; all must hold clips of one size, length and frame rate."""
    if not root:
        raise ValueError("data.root is empty: set it to a folder written by python -m training.prepare")
    from torch.utils.data import ConcatDataset

    from .data.dataset import ClipDataset, DatasetError

    first = ClipDataset(root)
    if not more_roots:
        return first
    parts = [first]
    want = {k: first.info.get("content", {}).get(k) for k in CLIP_SHAPE}
    for extra in more_roots:
        part = ClipDataset(extra)
        have = {k: part.info.get("content", {}).get(k) for k in CLIP_SHAPE}
        if have != want:
            raise DatasetError(f"data.more_roots: {extra} holds clips of {have} but data.root {root} holds {want}; "
                               "prepare it with the same --size, --frames and --fps")
        parts.append(part)
    return ConcatDataset(parts)
