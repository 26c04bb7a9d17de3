"""Write a model file from a teacher run's newest checkpoint (its weight average), to look at it mid-run.

    python -m training.snapshot --config training/configs/teacher_embedded.yaml --set ... --out snap.safetensors

Takes the same --config/--set as the run; the file loads like any model (``generate --model``, ``bench``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .batch import PosedDenoiser
from .config import ConfigError, TeacherConfig, load_config
from .finetune_teacher import export_teacher
from .model_setup import load_system, make_trainable, sparse_settings
from .runtime import check_resume, latest_checkpoint, load_checkpoint, read_checkpoint_state


def snapshot_teacher(cfg: TeacherConfig, out: str | Path, weights: str = "ema") -> tuple[Path, int]:
    """Export the newest checkpoint of ``cfg.run.output_dir`` to ``out``; returns the file and its step.

    ``weights``: "ema" (the average, what the run exports at its end) or "last" (the newest weights: early in a
    run the average still leans on the random start, 0.999 ** 1000 = 37 % after 1000 steps)."""
    if weights not in ("ema", "last"):
        raise ValueError(f"weights must be 'ema' or 'last'; got {weights!r}")
    ckpt = latest_checkpoint(Path(cfg.run.output_dir))
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {cfg.run.output_dir}/checkpoints yet (one is written every "
                                f"run.save_every={cfg.run.save_every} steps)")
    state = read_checkpoint_state(ckpt)
    check_resume(state, cfg, ("model", "lora"), ckpt)
    system = load_system(cfg.model, torch.device("cpu"))
    make_trainable(system.denoiser, cfg.lora)
    model = PosedDenoiser(system.denoiser)
    _, tensors = load_checkpoint(ckpt, {"denoiser": model}, {})
    ema = {k.removeprefix("ema/"): v for k, v in tensors.items() if k.startswith("ema/")} if weights == "ema" else {}
    cfg = replace(cfg, export=replace(cfg.export, path=str(Path(out).resolve())))
    exported = export_teacher(system, model, cfg, sparse_settings(system, cfg.sparse), ema)
    return Path(exported["model"]), int(state["step"])


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.snapshot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the teacher run's YAML config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="the run's overrides")
    p.add_argument("--out", required=True, help="model file to write (.safetensors)")
    p.add_argument("--weights", choices=("ema", "last"), default="ema",
                   help="the weight average (default; what the run exports) or the newest weights")
    args = p.parse_args(argv)
    try:
        path, step = snapshot_teacher(load_config(TeacherConfig, args.config, args.set), args.out,
                                      args.weights)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"step {step} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
