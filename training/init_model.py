"""Write a freshly initialised model file (a preset's random denoiser + a trained VAE) to train a teacher from.

    python -m training.init_model --preset cpu-small --vae runs/vae/vae.safetensors --out runs/init.safetensors

The file is an IASA model file (``load_model`` reads it), so ``training.finetune_teacher`` starts from it with
``model.spec`` set to its path. The VAE config in the file carries the latent statistics measured after the
VAE was trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from iasa_core.model.checkpoint import save_student
from iasa_core.model.presets import get_preset
from iasa_core.model.system import DEFAULT_SPARSE, PoseWanSystem
from training.train_vae import load_vae


def init_model(preset: str, vae_path: str | Path, out: str | Path, *, seed: int = 0,
               sparse: dict[str, Any] | None = None, shift: float = 3.0, pose_hidden: int | None = None) -> Path:
    """Random ``preset`` weights with the trained VAE (and ``pose_hidden`` pose-encoder channels in place of the
    preset's); returns the written path."""
    config = get_preset(preset)
    if pose_hidden is not None:
        if pose_hidden < 1:
            raise ValueError(f"pose_hidden must be >= 1; got {pose_hidden}")
        config.pose_hidden = pose_hidden
    vae, vae_config = load_vae(vae_path)
    if vae_config.get("z_dim") != config.vae.get("z_dim"):
        raise ValueError(f"{vae_path} has z_dim {vae_config.get('z_dim')} but preset {preset} needs "
                         f"{config.vae.get('z_dim')}")
    config.vae = vae_config
    system = PoseWanSystem.random(config, seed=seed)
    system.vae = vae.eval()
    system.schedule = {"kind": "teacher", "steps": 50, "guidance": 3.0, "shift": shift}
    system.sparse = dict(DEFAULT_SPARSE, **(sparse or {}))
    return save_student(system, out)


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.init_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--vae", required=True, help="vae.safetensors from python -m training.train_vae")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shift", type=float, default=3.0, help="timestep shift stored as the model's default")
    p.add_argument("--sparse", default='{"block_size": 64}', help="stored sparse settings (JSON) over the defaults")
    p.add_argument("--pose-hidden", type=int, default=None,
                   help="hidden channels of the pose encoders (default: the preset's; the shipped teacher was widened "
                        "to 16 after training, training.widen_pose)")
    args = p.parse_args(argv)
    path = init_model(args.preset, args.vae, args.out, seed=args.seed, sparse=json.loads(args.sparse),
                      shift=args.shift, pose_hidden=args.pose_hidden)
    print(f"initial model written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
