"""What every training script shares: processes and devices, data order, seeds, logging, checkpoints."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from safetensors.torch import save_file
from torch import nn

from .checkpoint_files import CheckpointError, damage, read_checkpoint_files
from .config import ConfigError, RunConfig, to_dict


@dataclass
class Runtime:
    """This process's place in the run: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def setup_runtime(run: RunConfig) -> Runtime:
    """Join the process group torchrun set up (env RANK/WORLD_SIZE), or run alone; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if run.device == "auto":
        device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        device = torch.device(run.device)
        if device.type == "cuda" and world > 1:
            device = torch.device(f"cuda:{local}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(rank, world, local, device)


def teardown_runtime(rt: Runtime) -> None:
    """Leave the process group."""
    if rt.distributed and dist.is_initialized():
        # Rank 0 exports while the others are done; leaving the group together avoids a gloo shutdown hang.
        dist.barrier()
        dist.destroy_process_group()


def wrap_ddp(module: nn.Module, rt: Runtime) -> nn.Module:
    """DistributedDataParallel over ``module`` when several processes run, else the module itself."""
    if not rt.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [rt.device.index] if rt.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper."""
    return getattr(module, "module", module)


def no_sync(module: nn.Module, skip: bool):
    """DDP's no_sync for gradient-accumulation micro-steps (a no-op context otherwise)."""
    if skip and hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()


def all_mean(value: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Mean of a scalar over processes (for logging)."""
    if not rt.distributed:
        return value.detach()
    v = value.detach().clone().to(rt.device)
    dist.all_reduce(v)
    return v / rt.world_size


def sample_index(step: int, micro: int, rt: Runtime, grad_accum: int) -> int:
    """The global number of the sample a (step, micro-step, rank) trains on, the same however work is split."""
    return (step * grad_accum + micro) * rt.world_size + rt.rank


def sample_generator(seed: int, k: int) -> torch.Generator:
    """The random stream of global sample ``k``: resumed or re-split runs draw exactly the same noise."""
    return torch.Generator().manual_seed(seed * 1_000_003 + k)


def clip_index(k: int, num_clips: int, seed: int) -> int:
    """Which clip global sample ``k`` is: a fresh seeded permutation every epoch, so no loader state to save."""
    epoch, pos = divmod(k, num_clips)
    perm = torch.randperm(num_clips, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return int(perm[pos])


def clip_stream(dataset: Any, start: int, steps: int, grad_accum: int, rt: Runtime, seed: int,
                num_workers: int) -> Iterator[dict[str, Any]]:
    """The clips of steps start..steps-1 (every micro-step) in order, read ahead by ``num_workers`` processes."""
    indices = [clip_index(sample_index(step, micro, rt, grad_accum), len(dataset), seed)
               for step in range(start, steps) for micro in range(grad_accum)]
    if num_workers <= 0:
        return (dataset[i] for i in indices)
    from torch.utils.data import DataLoader

    return iter(DataLoader(dataset, batch_size=None, sampler=indices, num_workers=num_workers,
                           persistent_workers=False, prefetch_factor=2))


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16" on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16), else "fp32".

    An explicit "bf16" on a CPU without it is kept, with a warning: PyTorch emulates bf16 there, and a matrix
    product runs ~80x slower than in float32 (2-core AVX2 EPYC, 1024x1024)."""
    from iasa_core.node_support import fast_bf16

    if precision == "bf16" and torch.device(device).type == "cpu" and not fast_bf16(device):
        warnings.warn("bf16 precision on a CPU without native bf16 (AMX / AVX512-BF16): PyTorch emulates it, "
                      "many times slower than float32; set run.precision (or --precision) to auto or fp32",
                      stacklevel=2)
    if precision != "auto":
        return precision
    return "bf16" if fast_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 autocast when asked (weights stay fp32), otherwise nothing ("auto": see ``resolve_precision``)."""
    precision = resolve_precision(precision, device)
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"run.precision must be 'fp32' or 'bf16'; got {precision!r}")
    return contextlib.nullcontext()


class MetricLogger:
    """Scalars to TensorBoard, a metrics.jsonl file and the console (main process only)."""

    def __init__(self, out_dir: Path, rt: Runtime, tensorboard: bool, total_steps: int) -> None:
        self.rt = rt
        self.total = total_steps
        self.start = time.perf_counter()
        self.writer = None
        self.jsonl = None
        if not rt.is_main:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out_dir / "metrics.jsonl", "a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("TensorBoard logging needs the tensorboard package: pip install -e \".[training]\""
                                   " (or set run.tensorboard=false)") from exc
            self.writer = SummaryWriter(str(out_dir / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float], echo: bool = True) -> None:
        """Record scalars for ``step`` (1-based count of finished steps)."""
        if not self.rt.is_main:
            return
        row = {"step": step, **{k: float(v) for k, v in scalars.items()}}
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, float(v), step)
        if echo:
            elapsed = time.perf_counter() - self.start
            parts = " ".join(f"{k}={float(v):.4g}" for k, v in scalars.items())
            print(f"[step {step}/{self.total}] {parts} ({elapsed:.1f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Flush and close the files."""
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


# -- checkpoints -------------------------------------------------------------------------------------------

CHECKPOINT_DIR = "checkpoints"


@torch.no_grad()
def ema_update(ema: dict[str, torch.Tensor], model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * current, over the trained weights."""
    for name, p in unwrap(model).named_parameters():
        if name in ema:
            ema[name].mul_(decay).add_(p.detach(), alpha=1 - decay)


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (requires_grad), by name."""
    return {n: p.detach() for n, p in unwrap(module).named_parameters() if p.requires_grad}


def complete_checkpoints(out_dir: Path) -> list[Path]:
    """The complete checkpoint folders (renamed into place), oldest first."""
    root = out_dir / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def latest_checkpoint(out_dir: Path, warn: Callable[[str], None] = _warn) -> Path | None:
    """The newest complete checkpoint folder whose files look whole, or None; damaged newer ones are reported."""
    found = complete_checkpoints(out_dir)
    for path in reversed(found):
        problem = damage(path)
        if problem is None:
            return path
        warn(f"checkpoint {path} is damaged ({problem}); using the one before it")
    if found:
        raise CheckpointError(f"every checkpoint in {out_dir / CHECKPOINT_DIR} is damaged; move the folder away "
                              "to start the run over")
    return None


def save_checkpoint(out_dir: Path, step: int, modules: dict[str, dict[str, torch.Tensor]],
                    optimizers: dict[str, torch.optim.Optimizer], extra: dict[str, Any], keep: int) -> Path:
    """Write step-N/ (weights as safetensors, optimizer state, state.json) atomically; prune old ones."""
    root = out_dir / CHECKPOINT_DIR
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {f"{part}/{name}": t.contiguous().cpu() for part, state in modules.items() for name, t in state.items()}
    save_file(tensors, str(tmp / "weights.safetensors"))
    torch.save({k: o.state_dict() for k, o in optimizers.items()}, tmp / "optimizers.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **extra}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """A checkpoint's state.json (step and the config it was trained with)."""
    return json.loads((path / "state.json").read_text())


def load_checkpoint(path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore trainable weights and optimizer states from ``save_checkpoint``'s folder.

    Returns state.json and every stored tensor by its key (``part/name``), for parts that are not modules (EMA).
    Every file is read before anything is restored: a damaged one raises CheckpointError and changes nothing.
    """
    return apply_checkpoint(path, read_checkpoint_files(path), modules, optimizers)


def apply_checkpoint(path: Path, files: tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]],
                     modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]
                     ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Copy what ``read_checkpoint_files`` read into the modules and optimizers; returns state.json and the tensors."""
    state, tensors, states = files
    for part, module in modules.items():
        params = dict(unwrap(module).named_parameters())
        prefix = f"{part}/"
        found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = {n for n, p in params.items() if p.requires_grad}
        if set(found) != expected:
            raise ValueError(f"checkpoint {path} does not fit the {part} being trained: missing "
                             f"{sorted(expected - set(found))[:4]}, unexpected {sorted(set(found) - expected)[:4]}; "
                             "was the config (LoRA rank/targets, model) changed? Use a new run.output_dir")
        with torch.no_grad():
            for name, value in found.items():
                params[name].copy_(value)
    for key, opt in optimizers.items():
        opt.load_state_dict(states[key])
    return state, tensors


def _set_aside(path: Path, problem: Exception) -> None:
    """Rename a damaged checkpoint out of the step-* sequence, so that pruning never keeps it over a good one."""
    aside = path.with_name(f"damaged-{path.name}")
    if aside.exists():
        shutil.rmtree(aside)
    os.replace(path, aside)
    _warn(f"checkpoint {path} is damaged ({problem}); moved it to {aside.name} and resuming from the one before")


def check_resume(state: dict[str, Any], cfg: Any, sections: tuple[str, ...], path: Path) -> None:
    """Refuse to resume a checkpoint trained with other values in ``sections`` of the config."""
    saved = state.get("config", {})
    now = to_dict(cfg)
    for section in sections:
        if saved.get(section) != now.get(section):
            raise ConfigError(f"{path} was trained with another {section} section ({saved.get(section)}); "
                              "resume with the same config or use a new run.output_dir")


def resume_run(out_dir: Path, cfg: Any, sections: tuple[str, ...], modules: dict[str, nn.Module],
               optimizers: dict[str, torch.optim.Optimizer], schedulers: list[Any], rt: Runtime
               ) -> tuple[int, dict[str, torch.Tensor]]:
    """Continue from the newest checkpoint in ``out_dir`` (same ``sections`` of the config) or start at step 0.

    Returns the step to start from and the checkpoint's tensors (for state that is not a module, e.g. EMA);
    the main process writes the run's config.yaml.
    """
    start, tensors = 0, {}
    found = complete_checkpoints(out_dir)
    for resume in reversed(found):
        try:
            files = read_checkpoint_files(resume)
        except CheckpointError as exc:
            if rt.is_main:
                _set_aside(resume, exc)
            continue
        check_resume(files[0], cfg, sections, resume)
        state, tensors = apply_checkpoint(resume, files, modules, optimizers)
        start = int(state["step"])
        for sched in schedulers:
            sched.last_epoch = start
        if rt.is_main:
            print(f"resuming from {resume} (step {start})", file=sys.stderr)
        break
    else:
        if found:
            raise CheckpointError(f"every checkpoint in {out_dir / CHECKPOINT_DIR} is damaged; they were set aside "
                                  "as damaged-step-*, so running again starts the run over from step 0")
    if rt.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return start, tensors
