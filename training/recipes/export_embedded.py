"""Copy the trained embedded models into the package (float16 storage, 30 MB at most in total).

    python -m training.recipes.export_embedded --teacher T.safetensors --dmd S_DMD.safetensors \\
        --student S.safetensors [--out iasa_core/weights]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from iasa_core.model.checkpoint import load_student, save_student
from iasa_core.model.embedded import EMBEDDED_MODELS

MAX_TOTAL_BYTES = 30 * 1000 * 1000


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.recipes.export_embedded", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--dmd", required=True, help="the student distilled without the region loss")
    p.add_argument("--student", required=True, help="the student distilled with DMD + the region loss")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "iasa_core" / "weights"))
    args = p.parse_args(argv)
    sources = {"embedded-teacher": args.teacher, "embedded-dmd": args.dmd, "embedded": args.student}
    total = 0
    for name, src in sources.items():
        system = load_student(src)
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
