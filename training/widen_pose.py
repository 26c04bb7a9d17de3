"""Widen a trained model's pose encoders without changing what it computes, so a fine-tune can use the width.

    python -m training.widen_pose --model teacher.safetensors --hidden 16 --out widened.safetensors

The hidden channels of both pose encoders (pose video and reference pose) grow to ``--hidden``. New channels
get fresh random input weights and zero weights into every old channel, so the widened model's outputs equal
the original's (to float rounding: a longer sum of zeros) until training moves those zeros (net2net-style
growth): a trained teacher keeps what it learnt and gains capacity where the pose is read. ``--blocks`` adds
a zero linear map of the pose tokens in front of every transformer block (``pose_blocks``), again without
changing the outputs. Everything else in the file is copied as it is.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from iasa_core.model.checkpoint import rewrite_denoiser
from iasa_core.model.pose_wan import PoseWanTransformer


def _widen_stack(old: nn.ModuleList, new: nn.ModuleList) -> None:
    """Copy ``old`` convolutions into the top-left corner of ``new``'s; zero new -> old connections."""
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out_a, in_a = a.weight.shape[:2]
            if i > 0:
                b.weight[:out_a, in_a:] = 0.0  # the new channels of the previous layer must not reach old ones
            b.weight[:out_a, :in_a] = a.weight
            b.bias[:out_a] = a.bias


def widen_pose_encoders(denoiser: PoseWanTransformer, hidden: int | None = None, *, blocks: bool = False,
                        seed: int = 0) -> PoseWanTransformer:
    """A copy of ``denoiser`` whose pose encoders have ``hidden`` channels (None: as they are) and, with
    ``blocks``, zero per-block pose maps (``config.pose_blocks``); its outputs are the same."""
    old_hidden = denoiser.config.pose_hidden
    hidden = old_hidden if hidden is None else hidden
    if hidden < old_hidden:
        raise ValueError(f"--hidden {hidden} is smaller than the model's pose_hidden {old_hidden}; widening only")
    config = type(denoiser.config).from_dict(denoiser.config.to_dict())
    config.pose_hidden = hidden
    config.pose_blocks = config.pose_blocks or blocks
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = PoseWanTransformer(config)
    wide.transformer.load_state_dict(denoiser.transformer.state_dict())
    if denoiser.block_pose_proj is not None:
        wide.block_pose_proj.load_state_dict(denoiser.block_pose_proj.state_dict())
    _widen_stack(denoiser.pose_encoder.convs, wide.pose_encoder.convs)
    _widen_stack(denoiser.ref_pose_encoder.convs, wide.ref_pose_encoder.convs)
    return wide.to(next(denoiser.parameters()).dtype)


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    p = argparse.ArgumentParser(prog="python -m training.widen_pose", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an IASA model file (teacher or student)")
    p.add_argument("--hidden", type=int, help="new hidden width of both pose encoders (default: as they are)")
    p.add_argument("--blocks", action="store_true",
                   help="also feed the pose tokens to every transformer block through a zero linear map each")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0, help="seed of the new channels' input weights")
    args = p.parse_args(argv)
    if args.hidden is None and not args.blocks:
        p.error("nothing to change: give --hidden N, --blocks or both")
    before, path = rewrite_denoiser(args.model, args.out,
                                    lambda d: widen_pose_encoders(d, args.hidden, blocks=args.blocks,
                                                                  seed=args.seed))
    done = []
    if args.hidden is not None:
        done.append(f"pose encoders widened from {before.pose_hidden} to {args.hidden} hidden channels")
    if args.blocks:
        done.append("pose maps into every block added" if not before.pose_blocks else "pose maps kept")
    print(f"{', '.join(done)}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
