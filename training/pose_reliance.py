"""How much a model reads the poses: its clean-latent error with the true, time-reversed and no poses, per noise level.

    python -m training.pose_reliance --model iasa_core/weights/iasa_embedded_teacher.safetensors [--clips 2]

On held-out clips of the synthetic world (the seed `bench quality` uses) each clip is encoded as training
encodes it; at each noise level sigma the same noise is added and the model's one-step estimate of the
clean latents x0 is compared with the truth (mean squared error in normalised latent units, latent frames
1.. since frame 0 is the given reference). A model that follows the poses does clearly worse with the poses
played backwards or left out; where the three errors match, it animates from the reference alone. For
scale, ``still`` is the same error for the latents of the reference frame held still (the static floor in
latent units). The estimate at sigma 1 (pure noise) is also decoded: its PSNR is what the model's mean guess
scores in pixels.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from iasa_core.bench.metrics import psnr
from iasa_core.bench.quality import heldout_clips
from iasa_core.model.pose_wan import drop_pose
from iasa_core.model.system import PoseWanSystem

from .batch import prepare_sample
from .objectives import add_noise, x0_from_flow

SIGMAS = (0.3, 0.6, 0.9, 1.0)
VARIANTS = ("poses", "reversed", "none")


def clip_reliance(system: PoseWanSystem, frames: np.ndarray, keypoints: np.ndarray, *,
                  sigmas: Sequence[float] = SIGMAS, seed: int = 1, bf16: bool = False) -> dict[str, Any]:
    """One clip (T, H, W, 3) uint8 with its keypoints (T, 133, 3): x0 MSE per sigma and variant, sigma-1 PSNR.

    ``system`` in float32; ``bf16`` runs the denoiser under bf16 autocast, as training does."""
    item = {"frames": frames, "keypoints": keypoints.astype(np.float32),
            "labels": np.zeros(frames.shape[:3], np.uint8), "clip_id": ""}
    sample = prepare_sample(system, item, sparse=None)
    x0 = sample.latents.float()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    denoiser = system.denoiser
    out: dict[str, Any] = {"mse": {}, "mean_guess_psnr": None}
    with torch.no_grad():
        still = system.encode(sample.frames[:, :, :1].expand_as(sample.frames)).float()
    out["still_mse"] = float((still[:, :, 1:] - x0[:, :, 1:]).square().mean())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        features = {"poses": denoiser.encode_poses(sample.pose_video, sample.ref_pose),
                    "reversed": denoiser.encode_poses(sample.pose_video.flip(2), sample.ref_pose)}
        features["none"] = drop_pose(features["poses"], torch.zeros(1))
        for sigma in sigmas:
            x_t = add_noise(x0, noise, sigma)
            timestep = torch.full((1,), 1000.0 * sigma)
            row = {}
            for name in VARIANTS:
                flow = denoiser(x_t, timestep, sample.condition, features[name]).float()
                guess = x0_from_flow(x_t, flow, sigma)
                row[name] = float((guess[:, :, 1:] - x0[:, :, 1:]).square().mean())
                if name == "poses" and sigma == 1.0:
                    out["mean_guess_psnr"] = psnr(system.decode(guess), frames)
            out["mse"][str(sigma)] = row
    return out


def check_heldout(clips: int, frames: int) -> None:
    """Clear errors for a held-out set a model cannot take (the diagnostics' --clips and --frames)."""
    if frames < 5 or (frames - 1) % 4:
        raise ValueError(f"--frames must be 4n+1 and at least 5; got {frames}")
    if clips < 1:
        raise ValueError(f"--clips must be at least 1; got {clips}")


def add_heldout_args(p: argparse.ArgumentParser) -> None:
    """The diagnostics' shared flags: --model, --clips, --frames, --json."""
    p.add_argument("--model", required=True, help="a model name or IASA .safetensors file")
    p.add_argument("--clips", type=int, default=2, help="held-out clips (default 2)")
    p.add_argument("--frames", type=int, default=81, help="frames per clip, 4n+1 (default 81)")
    p.add_argument("--json", help="also write the numbers here")


def pose_reliance(system: PoseWanSystem, clips: int = 2, frames: int = 81, *,
                  sigmas: Sequence[float] = SIGMAS, bf16: bool = False) -> dict[str, Any]:
    """Per held-out clip and on average: the x0 errors with true / reversed / no poses at each sigma."""
    check_heldout(clips, frames)
    per_clip = []
    for clip in heldout_clips(clips, frames / 25.0):
        per_clip.append(clip_reliance(system, clip.frames[:frames], clip.poses.keypoints[:frames],
                                      sigmas=sigmas, bf16=bf16))
    mean = {s: {v: float(np.mean([c["mse"][s][v] for c in per_clip])) for v in VARIANTS} for s in per_clip[0]["mse"]}
    return {"clips": per_clip, "mean": mean, "still_mse": float(np.mean([c["still_mse"] for c in per_clip]))}


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    from iasa_core.model.loading import load_model

    p = argparse.ArgumentParser(prog="python -m training.pose_reliance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_heldout_args(p)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (quicker on CPUs with bf16 units)")
    args = p.parse_args(argv)
    system = load_model(args.model).to("cpu", torch.float32)
    system.denoiser.eval()
    result = pose_reliance(system, args.clips, args.frames, bf16=args.bf16)
    for i, c in enumerate(result["clips"]):
        if c["mean_guess_psnr"] is not None:
            print(f"clip {i + 1}: the sigma-1 mean guess decodes to {c['mean_guess_psnr']:.2f} dB")
    print(f"the reference frame held still: x0 MSE {result['still_mse']:.4f}")
    print("sigma | x0 MSE with the poses | reversed | none")
    for s, row in result["mean"].items():
        print(f"{s} | {row['poses']:.4f} | {row['reversed']:.4f} | {row['none']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
