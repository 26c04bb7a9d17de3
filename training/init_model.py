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

from iasa_core.model.checkpoint import load_student, save_student
from iasa_core.model.presets import get_preset
from iasa_core.model.system import DEFAULT_SPARSE, POSE_RENDER_KEYS, PoseWanSystem
from training.train_vae import load_vae


def init_model(preset: str, vae_path: str | Path | None, out: str | Path, *, seed: int = 0,
               sparse: dict[str, Any] | None = None, shift: float = 3.0, pose_hidden: int | None = None,
               denoiser_from: str | Path | None = None, ref_every_frame: bool = False) -> Path:
    """Random ``preset`` weights with the trained VAE (and ``pose_hidden`` pose-encoder channels in place of the
    preset's); with ``denoiser_from``, that model file's denoiser, image encoder and pose drawing instead of random
    ones (a warm start on a new VAE's latents). ``ref_every_frame`` turns on ``config.ref_every_frame`` (the
    reference latent in every frame's I2V condition). ``vae_path`` None keeps ``denoiser_from``'s own VAE (and
    so its latent space: the students' latent cache stays valid). Returns the written path."""
    if vae_path is None and denoiser_from is None:
        raise ValueError("give a VAE (--vae, from python -m training.train_vae), or --denoiser-from to keep that "
                         "model's own VAE")
    if denoiser_from is not None:
        if pose_hidden is not None:
            raise ValueError("pose_hidden applies to a random denoiser; widen an existing one with "
                             "python -m training.widen_pose")
        system = load_student(denoiser_from)
        config, source = system.config, f"{denoiser_from}'s denoiser"
        pose_keys = {k: v for k, v in system.schedule.items() if k in POSE_RENDER_KEYS}
    else:
        config, source, pose_keys = get_preset(preset), f"preset {preset}", {}
        if pose_hidden is not None:
            if pose_hidden < 1:
                raise ValueError(f"pose_hidden must be >= 1; got {pose_hidden}")
            config.pose_hidden = pose_hidden
    if vae_path is not None:
        vae, vae_config = load_vae(vae_path)
        if vae_config.get("z_dim") != config.vae.get("z_dim"):
            raise ValueError(f"{vae_path} has z_dim {vae_config.get('z_dim')} but {source} needs "
                             f"{config.vae.get('z_dim')}")
        config.vae = vae_config
    config.ref_every_frame = config.ref_every_frame or ref_every_frame
    if denoiser_from is None:
        system = PoseWanSystem.random(config, seed=seed)
    if vae_path is not None:
        system.vae = vae.eval()
    system.schedule = {"kind": "teacher", "steps": 50, "guidance": 3.0, "shift": shift, **pose_keys}
    system.sparse = dict(DEFAULT_SPARSE, **(sparse or {}))
    return save_student(system, out)


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.init_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--vae", default=None, help="vae.safetensors from python -m training.train_vae (default with "
                                                "--denoiser-from: that model's own VAE)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shift", type=float, default=3.0, help="timestep shift stored as the model's default")
    p.add_argument("--sparse", default='{"block_size": 64}', help="stored sparse settings (JSON) over the defaults")
    p.add_argument("--pose-hidden", type=int, default=None,
                   help="hidden channels of the pose encoders (default: the preset's; the shipped teacher was widened "
                        "to 16 after training, training.widen_pose)")
    p.add_argument("--denoiser-from", default=None,
                   help="an IASA model file whose denoiser (and image encoder, pose drawing) to start from instead "
                        "of random weights: a warm start on the new VAE's latents (--preset is then unused)")
    p.add_argument("--ref-every-frame", action="store_true",
                   help="put the reference image's latent into every frame's I2V condition, not only the first "
                        "(config.ref_every_frame; changes what the model computes, so train after it)")
    args = p.parse_args(argv)
    try:
        path = init_model(args.preset, args.vae, args.out, seed=args.seed, sparse=json.loads(args.sparse),
                          shift=args.shift, pose_hidden=args.pose_hidden, denoiser_from=args.denoiser_from,
                          ref_every_frame=args.ref_every_frame)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"initial model written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
