"""`python -m iasa_core bench vae`: how well a model's VAE gives back held-out videos, per latent frame.

The VAE bounds every picture the model makes: what it loses, no denoiser can put back. A causal video VAE can
also drift over time (its caches fill with real frames only after a few latent frames), so the PSNR is
reported per latent frame (the first stands for one video frame, every other for four), not only overall.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

from ..model.vae_codec import decode_latents, encode_moments
from .quality import HELDOUT_SEED, heldout_clips


def heldout_set(count: int, frames: int = 81, size: int = 128, seed: int = HELDOUT_SEED
                ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Exact frames of ``count`` held-out synthetic-world clips as (1, 3, frames, size, size) in [-1, 1], and
    each clip's face and hand masks (frames, size, size) bool, as ``bench quality`` draws them."""
    from .metrics import region_masks

    if (frames - 1) % 4:
        raise ValueError(f"frames must be 4n+1 (the VAE's temporal grid); got {frames}")
    clips = heldout_clips(count, (frames + 2) / 25.0, size=size, seed=seed)
    videos = [torch.from_numpy(c.frames[:frames]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0 for c in clips]
    masks = [{k: torch.from_numpy(v) for k, v in region_masks(c.poses.keypoints[:frames], size, size).items()}
             for c in clips]
    return videos, masks


def heldout_videos(count: int, frames: int = 81, size: int = 128, seed: int = HELDOUT_SEED) -> list[torch.Tensor]:
    """Exact frames of ``count`` held-out synthetic-world clips as (1, 3, frames, size, size) in [-1, 1]."""
    return heldout_set(count, frames, size, seed)[0]


def _db(mse: torch.Tensor) -> float:
    return round(float(10 * torch.log10(4.0 / mse.mean().clamp_min(1e-12))), 3)


def reconstruction_psnr(reconstruct: Callable[[torch.Tensor], torch.Tensor], videos: list[torch.Tensor],
                        masks: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """PSNR (dB, pixels in [-1, 1]) of ``reconstruct(video)`` against each video: overall, per latent frame, first,
    worst, and with ``masks`` (one dict of (T, H, W) bool masks per video, e.g. ``heldout_set``'s) inside each."""
    if not videos:
        raise ValueError("reconstruction_psnr needs at least one video")
    if masks is not None and len(masks) != len(videos):
        raise ValueError(f"reconstruction_psnr: {len(masks)} mask sets for {len(videos)} videos")
    total = None
    region_sums: dict[str, list[float]] = {}  # name -> [squared error, pixel count]
    with torch.no_grad():
        for i, x in enumerate(videos):
            rec = reconstruct(x).float()
            sq = ((rec - x) ** 2).mean(dim=1)[0]  # (T, H, W), averaged over colour
            err = sq.mean(dim=(1, 2))  # per video frame
            total = err if total is None else total + err
            for name, mask in (masks[i] if masks is not None else {}).items():
                acc = region_sums.setdefault(name, [0.0, 0.0])
                acc[0] += float(sq[mask].sum())
                acc[1] += float(mask.sum())
    per_frame = total / len(videos)
    groups = [per_frame[:1]] + [per_frame[1 + 4 * i: 5 + 4 * i] for i in range((len(per_frame) - 1) // 4)]
    per_latent = [_db(g) for g in groups]
    out = {"psnr": _db(per_frame), "psnr_first": per_latent[0], "psnr_per_latent": per_latent,
           "psnr_worst_latent": min(per_latent)}
    for name, (err_sum, count) in region_sums.items():
        out[f"psnr_{name}"] = _db(torch.tensor(err_sum / count)) if count else float("nan")
    return out


def roundtrip_psnr(vae: Any, videos: list[torch.Tensor], *, precision: str = "fp32",
                   masks: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """``reconstruction_psnr`` of the VAE's encode (posterior mode) -> decode."""
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def round_trip(x: torch.Tensor) -> torch.Tensor:
        with cast:
            return decode_latents(vae, encode_moments(vae, x).chunk(2, dim=1)[0])

    return reconstruction_psnr(round_trip, videos, masks)


def thumbnail(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Video (B, 3, T, H, W) in [-1, 1] shrunk ``factor`` times (area mean) and blown up again (bicubic): what a
    (H/factor x W/factor) RGB picture per frame keeps, the scale a VAE's round trip is read against."""
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    small = torch.nn.functional.interpolate(frames, size=(h // factor, w // factor), mode="area")
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
    return big.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


THUMBNAIL_FACTORS = (4, 8)  # the VAE's own grid (8) and twice as fine
PCA_FIT_SEED = 7  # the linear yardstick is fitted on clips of another world seed than the ones it is scored on
PCA_FIT_CLIPS = 4


def block_pca_reference(videos: list[torch.Tensor], masks: list[dict[str, torch.Tensor]], channels: int,
                        frames: int) -> dict[str, Any]:
    """``reconstruction_psnr`` of a linear codec with the VAE's own budget (``block_pca``, ``channels`` numbers per
    latent cell), fitted on held-out clips of another world seed."""
    from . import block_pca

    fit_videos = heldout_set(PCA_FIT_CLIPS, frames, size=videos[0].shape[-1], seed=PCA_FIT_SEED)[0]
    pca = block_pca.fit_block_pca(fit_videos, channels)
    return reconstruction_psnr(lambda x: block_pca.decode(pca, block_pca.encode(pca, x)), videos, masks)


def bench_vae(model: str = "embedded", clips: int = 4, frames: int = 81, *, precision: str = "fp32",
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Round-trip PSNR of a model's VAE on held-out clips (the world seed of ``bench quality``)."""
    from ..model.loading import load_model

    system = load_model(model)
    videos, masks = heldout_set(clips, frames)
    t0 = time.perf_counter()
    result = roundtrip_psnr(system.vae, videos, precision=precision, masks=masks)
    seconds = time.perf_counter() - t0
    log(f"VAE of {system.source}: {clips} held-out clips x {frames} frames, {precision}: PSNR {result['psnr']:.2f} dB,"
        f" first frame {result['psnr_first']:.2f} dB, worst latent frame {result['psnr_worst_latent']:.2f} dB, "
        f"face {result['psnr_face']:.2f} dB, hands {result['psnr_hands']:.2f} dB "
        f"({seconds:.1f} s)")
    log("per latent frame: " + " ".join(f"{v:.1f}" for v in result["psnr_per_latent"]))
    thumbs = {}
    for f in THUMBNAIL_FACTORS:
        r = reconstruction_psnr(lambda x, f=f: thumbnail(x, f), videos, masks)
        thumbs[f"x{f}"] = {k: r[k] for k in ("psnr", "psnr_face", "psnr_hands")}
        log(f"for scale, the same clips shrunk {f}x and blown up again: PSNR {r['psnr']:.2f} dB, face "
            f"{r['psnr_face']:.2f} dB, hands {r['psnr_hands']:.2f} dB")
    z = system.vae.config.z_dim
    r = block_pca_reference(videos, masks, z, frames)
    linear = {k: r[k] for k in ("psnr", "psnr_face", "psnr_hands")}
    log(f"a linear codec with the same budget ({z} principal components per 8x8-pixel, 4-frame block): PSNR "
        f"{r['psnr']:.2f} dB, face {r['psnr_face']:.2f} dB, hands {r['psnr_hands']:.2f} dB")
    return {"model": model, "source": system.source, "clips": clips, "frames": frames, "precision": precision,
            "seed": HELDOUT_SEED, "seconds": seconds, **result, "thumbnails": thumbs, "block_pca": linear}
