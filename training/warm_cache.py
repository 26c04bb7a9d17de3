"""Encode a prepared dataset into the trainers' disk cache ahead of training, on cores training does not use.

    python -m training.warm_cache --model init.safetensors --data DATASET --cache-dir ENCODED [--shard 0/2]

The teacher and the students encode each clip with the frozen VAE and image encoder the first time they
draw it (about half an hour for 1000 clips on 2 cores). This writes the same cache files first (same
folder, named by the VAE, image encoder, prompt and precision), so a run that starts afterwards, or is
running beside it, reads them instead. Clips already cached are skipped; several processes may share the
work with ``--shard I/N``. ``--precision`` must match the run's ``run.precision``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .batch import clip_identity, encoded_key, prepare_sample
from .config import ModelSpec
from .model_setup import load_system, open_dataset
from .runtime import resolve_precision
from .sample_cache import SampleCache


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like I/N (e.g. 0/2); got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: I must be in 0..N-1")
    return index, count


def warm_cache(model: str, data: str, cache_dir: str, *, precision: str = "auto", shard: tuple[int, int] = (0, 1),
               log=print) -> dict[str, int]:
    """Encode every clip of ``data`` in this shard into ``cache_dir``; returns counts of encoded and skipped clips."""
    device = torch.device("cpu")
    dataset = open_dataset(data)
    system = load_system(ModelSpec(spec=model), device)
    bf16 = resolve_precision(precision, device) == "bf16"
    cache = SampleCache(True, cache_dir, system, bf16)
    index, count = shard
    todo = list(range(index, len(dataset), count))
    done = skipped = 0
    t0 = time.perf_counter()
    for n, i in enumerate(todo):
        item = dataset[i]
        if cache.get(encoded_key(clip_identity(item), 0, system.pose_style())) is not None:
            skipped += 1
        else:
            prepare_sample(system, item, sparse=None, cache=cache, encode_bf16=bf16)
            done += 1
        cache.clear()  # the files are what later runs read; memory stays flat
        if (n + 1) % 50 == 0 or n + 1 == len(todo):
            log(f"{n + 1}/{len(todo)} clips ({done} encoded, {skipped} already cached) in "
                f"{time.perf_counter() - t0:.0f} s -> {cache.directory}")
    return {"encoded": done, "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.warm_cache", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the run's model.spec (teacher) or teacher.spec (students)")
    p.add_argument("--data", required=True, help="the run's data.root")
    p.add_argument("--cache-dir", required=True, help="the run's data.cache_dir")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="the run's run.precision")
    p.add_argument("--shard", default="0/1", help="I/N: this process encodes clips I, I+N, I+2N, ...")
    args = p.parse_args(argv)
    try:
        shard = parse_shard(args.shard)
    except ValueError as e:
        p.error(str(e))
    warm_cache(args.model, args.data, args.cache_dir, precision=args.precision, shard=shard)
    return 0


if __name__ == "__main__":
    sys.exit(main())
