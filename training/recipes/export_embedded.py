"""Copy the trained embedded models into the package (float16 storage, 40 MB at most in total).

    python -m training.recipes.export_embedded --teacher T.safetensors --dmd S_DMD.safetensors \\
        --student S.safetensors [--vae V.safetensors] [--out iasa_core/weights]

``--vae`` puts a VAE whose decoder was fine-tuned afterwards (``train_vae --decoder-only``) into every model; its
encoder and latent statistics must be those the models were trained with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from iasa_core.model.checkpoint import load_student, save_student
from iasa_core.model.embedded import EMBEDDED_MODELS
from iasa_core.model.system import PoseWanSystem
from training.train_vae import encoder_state, load_vae

MAX_TOTAL_BYTES = 40 * 1000 * 1000


def replace_decoder(system: PoseWanSystem, vae_path: str | Path) -> None:
    """Load ``vae_path``'s weights into ``system.vae`` after checking that the latents cannot change."""
    vae, config = load_vae(vae_path)
    mine, theirs = encoder_state(system.vae), encoder_state(vae)
    same = mine.keys() == theirs.keys() and all(torch.equal(mine[k].float(), theirs[k].float()) for k in mine)
    stats = all(list(system.vae.config[k]) == list(config[k]) for k in ("latents_mean", "latents_std"))
    if not (same and stats):
        raise ValueError(f"{vae_path}: its encoder or latent statistics differ from the model's VAE, so the model's "
                         "latents would not decode right; fine-tune with `train_vae --init <that VAE> "
                         "--decoder-only true`")
    system.vae.load_state_dict({k: v.to(system.vae.dtype) for k, v in vae.state_dict().items()})


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.recipes.export_embedded", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--dmd", required=True, help="the student distilled without the region loss")
    p.add_argument("--student", required=True, help="the student distilled with DMD + the region loss")
    p.add_argument("--vae", help="a decoder-only fine-tune of the models' VAE to put into all three")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "iasa_core" / "weights"))
    args = p.parse_args(argv)
    sources = {"embedded-teacher": args.teacher, "embedded-dmd": args.dmd, "embedded": args.student}
    total = 0
    for name, src in sources.items():
        system = load_student(src)
        if args.vae:
            try:
                replace_decoder(system, args.vae)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        path = save_student(system, Path(args.out) / EMBEDDED_MODELS[name], storage_dtype=torch.float16)
        size = path.stat().st_size
        total += size
        print(f"{name}: {src} -> {path} ({size / 1e6:.1f} MB)")
    print(f"total {total / 1e6:.1f} MB")
    if total > MAX_TOTAL_BYTES:
        print(f"error: the embedded models must stay under {MAX_TOTAL_BYTES / 1e6:.0f} MB", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
