"""Deepen a trained model's DiT without changing what it computes, so a fine-tune can use the new layers.

    python -m training.deepen --model teacher.safetensors --layers 8 --out deeper.safetensors

New transformer blocks are inserted evenly between the trained ones. Each starts as the identity: its
self-attention, cross-attention and feed-forward output projections are zero (net2net-style growth), so
the deeper model's outputs equal the original's exactly until training moves those zeros; its other
weights are copies of the block before it (a start that already reads the residual stream sensibly).
Everything else in the file (pose encoders, VAE, image encoder, schedule) is copied as it is.
"""

from __future__ import annotations

import argparse
import sys

import torch

from iasa_core.model.checkpoint import rewrite_denoiser
from iasa_core.model.pose_wan import PoseWanTransformer

# The three residual branches of a Wan block end in these projections; zero, the block passes its input on.
BRANCH_OUTPUTS = ("attn1.to_out.0", "attn2.to_out.0", "ffn.net.2")


def block_sources(old: int, new: int) -> list[int | None]:
    """For each of ``new`` blocks, the index of the trained block it copies, or None for an inserted one.

    Inserted blocks are spread evenly: with 6 -> 8 they follow trained blocks 1 and 3 (counting from 0)."""
    if new < old:
        raise ValueError(f"--layers {new} is fewer than the model's {old} layers; deepening only")
    inserts = [0] * old
    for k in range(new - old):
        inserts[min(old - 1, max(0, (k + 1) * old // (new - old + 1) - 1))] += 1
    out: list[int | None] = []
    for i, n in enumerate(inserts):
        out += [i] + [None] * n
    return out


def deepen(denoiser: PoseWanTransformer, layers: int) -> PoseWanTransformer:
    """A copy of ``denoiser`` with ``layers`` transformer blocks and the same outputs."""
    old = denoiser.config.transformer["num_layers"]
    sources = block_sources(old, layers)
    config = type(denoiser.config).from_dict(denoiser.config.to_dict())
    config.transformer["num_layers"] = layers
    deep = PoseWanTransformer(config)
    state = denoiser.state_dict()
    per_block = ("transformer.blocks.", "block_pose_proj.")
    new_state = {k: v for k, v in state.items() if not k.startswith(per_block)}
    last = 0
    for j, src in enumerate(sources):
        copy_of = last if src is None else src
        last = copy_of
        for k, v in state.items():
            for head in per_block:
                prefix_old = f"{head}{copy_of}."
                if k.startswith(prefix_old):
                    name = k[len(prefix_old):]
                    # an inserted block passes its input on and reads no pose until training says otherwise
                    zero = src is None and (head == "block_pose_proj."
                                            or any(name.startswith(b + ".") for b in BRANCH_OUTPUTS))
                    new_state[f"{head}{j}.{name}"] = torch.zeros_like(v) if zero else v.clone()
    deep.load_state_dict(new_state)
    return deep.to(next(denoiser.parameters()).dtype)


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.deepen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an IASA model file (teacher or student)")
    p.add_argument("--layers", type=int, required=True, help="new number of transformer blocks")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    before, path = rewrite_denoiser(args.model, args.out, lambda d: deepen(d, args.layers))
    print(f"DiT deepened from {before.transformer['num_layers']} to {args.layers} blocks: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
