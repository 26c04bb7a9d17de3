"""Train a Wan-architecture VAE (diffusers ``AutoencoderKLWan``) on the frames of a prepared dataset.

The embedded default model's VAE is made this way on the synthetic world; big models use the released Wan VAE.
Loss: L1 + MSE on pixels of short causal windows (1 + 4n frames, so both the lone first frame and the
4-frame groups are trained) + a small KL term. After training the per-channel latent mean and standard
deviation are measured over the dataset and written into the VAE config, as Wan's ``latents_mean/std``.

    python -m training.train_vae --data DATASET --out runs/vae [--steps 2000 --config base_dim=4 ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

from iasa_core.bench import block_pca
from iasa_core.bench.vae import heldout_set, roundtrip_psnr
from iasa_core.model.presets import get_preset
from iasa_core.model.vae_codec import decode_latents, encode_moments
from iasa_core.pose.layout import REGION_FACE, REGION_HANDS
from training.data import ClipDataset
from training.runtime import (
    autocast,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint_state,
    resolve_precision,
    sample_generator,
    save_checkpoint,
    trainable_state,
)

EMBEDDED_VAE = get_preset("cpu-small").vae  # the embedded models' VAE architecture (one definition: the preset)


@dataclass
class VaeTrainConfig:
    """Everything a VAE run depends on (written next to the weights; a resume must use the same values)."""

    data: str
    out: str
    vae: dict[str, Any] = field(default_factory=lambda: dict(EMBEDDED_VAE))
    steps: int = 2000
    batch: int = 8
    window_latents: int = 2        # windows of 1 + 4 * (window_latents - 1) frames
    crop: int = 64                 # random square crops (the VAE is convolutional; 4x cheaper steps than 128)
    # Every long_every-th step trains long windows instead (0: never): the encoder's steady state, with its
    # causal caches full of real frames, is only reached after a few latent frames; short windows never see it
    # and long videos then drift in colour.
    long_every: int = 0
    long_window_latents: int = 21
    long_crop: int = 32
    long_batch: int = 2
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.0      # the cosine decays to lr * min_lr_ratio
    kl_weight: float = 1e-6
    sample_noise: float = 0.05     # scale of the posterior sample's noise during training
    mse_weight: float = 1.0
    l1_weight: float = 0.1         # L1 alone pulls flat-background frames to their median and stalls early
    precision: str = "auto"        # auto (bf16 where the CPU/GPU runs it fast) | bf16 | fp32; weights stay fp32
    seed: int = 0
    log_every: int = 25
    save_every: int = 500          # checkpoints for resuming (the newest ``keep`` are kept)
    keep: int = 2
    eval_every: int = 0            # held-out check every N steps (0: only at the end when eval_clips > 0)
    eval_clips: int = 0            # exact 81-frame clips of a world seed the data does not use
    eval_seed: int = 31337
    stats_clips: int = 32          # clips encoded to measure the latent statistics
    init: str | None = None        # start from this vae.safetensors (e.g. a second stage with longer windows)
    # Residual branches (and attention outputs) start at zero, so every block starts as its shortcut: a narrow
    # Wan VAE then learns colours several times faster (measured: +1.5 dB after 350 steps, 1.9 M parameters).
    zero_init_residual: bool = True
    weight_decay: float = 0.0
    # With ``init``: train the decoder alone. The encoder, and so the latents every DiT was trained on, stay
    # bit-identical, so a better decoder can replace the one inside finished teacher and student files.
    decoder_only: bool = False
    # Extra pixel-loss weight inside the face and the hands (the dataset's region labels): a pixel there counts
    # 1 + weight times. Both are a few percent of a frame, so a plain mean spends the capacity on flat background.
    face_weight: float = 0.0
    hands_weight: float = 0.0
    # Guide the encoder towards a linear codec with the same budget (the z_dim leading principal components of the
    # latent grid's 8x8-pixel, 4-frame blocks, ``iasa_core.bench.block_pca``): pca_weight * MSE between the
    # posterior mean and the scaled coefficients, fading linearly to 0 at step pca_fade_steps (0: never fades).
    # An autoencoder trained from scratch finds slowly what an SVD gives at once (the shipped VAE, 12000 steps,
    # stays 2.6 dB below that linear codec on held-out clips).
    pca_weight: float = 0.0
    # ... and teach the decoder to draw from those coefficients themselves (pca_decoder_weight * pixel MSE of
    # decode(coefficients)), so both halves start towards the linear codec's solution; fades with the guide.
    pca_decoder_weight: float = 0.0
    pca_fade_steps: int = 0
    pca_clips: int = 32            # dataset clips the principal components are fitted on


def mirror_frames(clip: torch.Tensor, length: int) -> torch.Tensor:
    """``clip`` (T, ...) played forward, backward, forward... (turning frames not repeated) to ``length`` frames.

    The decoder's causal receptive field spans about 20 latent frames; windows longer than the 81-frame clips
    are what trains its steady state (without it, frames after ~80 of a long video drift in colour)."""
    n = clip.shape[0]
    if length <= n or n < 2:
        return clip[:length] if n >= length else clip[torch.arange(length) % n]
    period = 2 * (n - 1)
    idx = torch.arange(length) % period
    idx = torch.where(idx < n, idx, period - idx)
    return clip[idx]


def _windows(dataset: ClipDataset, cfg: VaeTrainConfig, g: torch.Generator, *, long: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random causal windows (B, 3, 1 + 4n, crop, crop) in [-1, 1] (``long``: the long-window kind)
    and their region labels (B, 1 + 4n, crop, crop)."""
    latents, crop, batch = (cfg.long_window_latents, cfg.long_crop, cfg.long_batch) if long else \
        (cfg.window_latents, cfg.crop, cfg.batch)
    length = 4 * (latents - 1) + 1
    out, regions = [], []
    for _ in range(batch):
        item = dataset[int(torch.randint(len(dataset), (1,), generator=g))]
        clip, labels = torch.as_tensor(item["frames"]), torch.as_tensor(item["labels"])
        if clip.shape[0] < length:
            clip, labels = mirror_frames(clip, length), mirror_frames(labels, length)
        start = int(torch.randint(max(1, clip.shape[0] - length + 1), (1,), generator=g))
        h, w = clip.shape[1:3]
        size = min(crop or h, h, w) // 16 * 16
        y0 = int(torch.randint(h - size + 1, (1,), generator=g))
        x0 = int(torch.randint(w - size + 1, (1,), generator=g))
        x = clip[start:start + length, y0:y0 + size, x0:x0 + size].permute(3, 0, 1, 2).float() / 127.5 - 1.0
        out.append(x)
        regions.append(labels[start:start + length, y0:y0 + size, x0:x0 + size])
    return torch.stack(out), torch.stack(regions)


def pixel_weights(cfg: VaeTrainConfig, labels: torch.Tensor) -> torch.Tensor | None:
    """Per-pixel loss weights (B, 1, T, H, W) from region labels (B, T, H, W); None when no region is weighted."""
    if cfg.face_weight == 0 and cfg.hands_weight == 0:
        return None
    w = 1.0 + cfg.face_weight * (labels == REGION_FACE).float() + cfg.hands_weight * (labels == REGION_HANDS).float()
    return w[:, None]


def weighted_mean(err: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``err`` (B, C, T, H, W) under per-pixel ``weights`` (normalised, so the loss keeps its scale)."""
    if weights is None:
        return err.mean()
    return (err * weights).sum() / (weights.sum() * err.shape[1])


def fit_pca_guide(dataset: ClipDataset, cfg: VaeTrainConfig) -> tuple[block_pca.BlockPCA, float]:
    """The block PCA of the first ``pca_clips`` clips (z_dim components) and the scale that brings its leading
    coefficient to unit standard deviation (the others keep their relative size: an error in any coefficient
    costs the same in pixels)."""
    def videos():
        for i in range(min(cfg.pca_clips, len(dataset))):
            frames = torch.as_tensor(dataset[i]["frames"])
            t, h, w = 4 * ((frames.shape[0] - 1) // 4) + 1, frames.shape[1] // 8 * 8, frames.shape[2] // 8 * 8
            yield frames[:t, :h, :w].permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0

    pca = block_pca.fit_block_pca(videos(), cfg.vae.get("z_dim", 16))
    lead = torch.cat([block_pca.encode(pca, v)[:, 0, 1:].reshape(-1) for v in videos()])
    return pca, float(lead.std().clamp_min(1e-6))


def pca_guide_loss(guide: tuple[block_pca.BlockPCA, float], mean: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MSE between the posterior ``mean`` (B, z, 1 + n, H/8, W/8) and the scaled block-PCA coefficients of ``x``."""
    pca, scale = guide
    return ((mean.float() - block_pca.encode(pca, x) / scale) ** 2).mean()


def pca_guide_fade(cfg: VaeTrainConfig, step: int) -> float:
    """The factor (1 down to 0) on the guide's weights at 1-based ``step``."""
    if cfg.pca_fade_steps <= 0:
        return 1.0
    return max(0.0, 1.0 - (step - 1) / cfg.pca_fade_steps)


def is_long_step(cfg: VaeTrainConfig, step: int) -> bool:
    """Whether 1-based ``step`` trains the long windows."""
    return cfg.long_every > 0 and step % cfg.long_every == 0


def zero_init_residuals(vae: AutoencoderKLWan) -> None:
    """Zero the last layer of every residual branch and attention block (each block starts as its shortcut)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanAttentionBlock, WanResidualBlock

    with torch.no_grad():
        for m in vae.modules():
            last = m.conv2 if isinstance(m, WanResidualBlock) else m.proj if isinstance(m, WanAttentionBlock) else None
            if last is not None:
                last.weight.zero_()
                last.bias.zero_()


def decoder_parameters(vae: AutoencoderKLWan) -> list[torch.nn.Parameter]:
    """The weights that act after the latents (post_quant_conv and decoder)."""
    return list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())


def encoder_state(vae: AutoencoderKLWan) -> dict[str, torch.Tensor]:
    """The weights the latents depend on (encoder and quant_conv)."""
    return {k: v for k, v in vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}


def latent_stats(vae: AutoencoderKLWan, dataset: ClipDataset, clips: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means over the first ``clips`` clips."""
    total, sq, n = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(min(clips, len(dataset))):
            frames = dataset[i]["frames"]
            t = 4 * ((frames.shape[0] - 1) // 4) + 1
            x = frames[:t].permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0
            mu = encode_moments(vae, x).chunk(2, dim=1)[0].double()
            total = total + mu.sum(dim=(0, 2, 3, 4))
            sq = sq + (mu * mu).sum(dim=(0, 2, 3, 4))
            n += mu[0, 0].numel()
    mean = total / n
    std = (sq / n - mean * mean).clamp_min(1e-12).sqrt()
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def save_vae(vae: AutoencoderKLWan, config: dict[str, Any], path: Path) -> None:
    """The VAE's weights with its config (including the latent statistics) in the safetensors metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    state = {k: v.detach().contiguous() for k, v in vae.state_dict().items()}
    save_file(state, str(tmp), metadata={"format": "iasa-vae", "config": json.dumps(config)})
    os.replace(tmp, path)


def load_vae(path: str | Path) -> tuple[AutoencoderKLWan, dict[str, Any]]:
    """Inverse of ``save_vae``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "iasa-vae":
        raise ValueError(f"{path} is not a VAE written by training.train_vae")
    config = json.loads(meta["config"])
    vae = AutoencoderKLWan(**config)
    vae.load_state_dict(load_file(str(path)))
    return vae, config


def same_settings(saved: dict[str, Any] | None, cfg: VaeTrainConfig) -> bool:
    """Whether a checkpoint's stored settings are ``cfg``'s; a setting added after the checkpoint was written
    counts as its default (so an upgrade does not orphan a running training)."""
    if saved is None:
        return False
    current = asdict(cfg)
    defaults = asdict(VaeTrainConfig(data=cfg.data, out=cfg.out, vae=cfg.vae))
    return set(saved) <= set(current) and {**defaults, **saved} == current


def train_vae(cfg: VaeTrainConfig) -> Path:
    """Run the training (resuming from the newest checkpoint in ``cfg.out``); returns ``vae.safetensors``."""
    if cfg.face_weight < 0 or cfg.hands_weight < 0:
        raise ValueError(f"--face-weight and --hands-weight must be >= 0; got {cfg.face_weight}, {cfg.hands_weight}")
    if min(cfg.pca_weight, cfg.pca_decoder_weight, cfg.pca_fade_steps) < 0:
        raise ValueError(f"--pca-weight, --pca-decoder-weight and --pca-fade-steps must be >= 0; got "
                         f"{cfg.pca_weight}, {cfg.pca_decoder_weight}, {cfg.pca_fade_steps}")
    if cfg.pca_weight > 0 and cfg.decoder_only:
        raise ValueError("--pca-weight guides the encoder, which --decoder-only keeps frozen: use one or the other")
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    dataset = ClipDataset(cfg.data)
    init_config: dict[str, Any] = {}
    if cfg.init:
        vae, init_config = load_vae(cfg.init)
        cfg.vae = {k: v for k, v in init_config.items() if k not in ("latents_mean", "latents_std")}
        vae.train()
    elif cfg.decoder_only:
        raise ValueError("--decoder-only needs --init (the VAE whose encoder stays as it is)")
    else:
        vae = AutoencoderKLWan(**cfg.vae).train()
        if cfg.zero_init_residual:
            zero_init_residuals(vae)
    params = decoder_parameters(vae) if cfg.decoder_only else list(vae.parameters())
    if cfg.decoder_only:
        vae.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    floor = cfg.min_lr_ratio
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps))
        * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))))
    start = 0
    resume = latest_checkpoint(out)
    if resume is not None:
        state = read_checkpoint_state(resume)
        if not same_settings(state.get("config"), cfg):
            raise ValueError(f"{resume} was trained with other settings ({state.get('config')}); resume with the "
                             f"same options or use a new --out")
        load_checkpoint(resume, {"vae": vae}, {"vae": opt})
        start = int(state["step"])
        sched.last_epoch = start
        print(f"resuming from {resume} (step {start})", flush=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    guide = fit_pca_guide(dataset, cfg) if cfg.pca_weight > 0 or cfg.pca_decoder_weight > 0 else None
    eval_clips, eval_masks = heldout_set(cfg.eval_clips, seed=cfg.eval_seed) if cfg.eval_clips > 0 else ([], [])
    log = (out / "metrics.jsonl").open("a")
    t0 = time.perf_counter()
    for step in range(start + 1, cfg.steps + 1):
        g = sample_generator(cfg.seed, step)  # a function of the step alone: a resumed run draws the same batches
        x, labels = _windows(dataset, cfg, g, long=is_long_step(cfg, step))
        weights = pixel_weights(cfg, labels)
        with autocast(torch.device("cpu"), precision), torch.set_grad_enabled(not cfg.decoder_only):
            moments = encode_moments(vae, x).float()
        with autocast(torch.device("cpu"), precision):
            mean, logvar = moments.chunk(2, dim=1)
            logvar = logvar.clamp(-30.0, 20.0)
            # Near-deterministic: the DiT is trained on the posterior's mode, and a unit-variance sample at the
            # start of training drowns the tiny encoder's signal (the decoder then learns to ignore z and stalls).
            z = mean + cfg.sample_noise * torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
            rec = decode_latents(vae, z, clamp=False).float()
        sq = (rec - x) ** 2
        l1 = weighted_mean((rec - x).abs(), weights)
        mse = weighted_mean(sq, weights)
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).mean()
        loss = cfg.l1_weight * l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
        fade = pca_guide_fade(cfg, step) if guide is not None else 0.0
        if fade > 0 and cfg.pca_weight > 0:
            pca_loss = pca_guide_loss(guide, mean, x)
            loss = loss + fade * cfg.pca_weight * pca_loss
        if fade > 0 and cfg.pca_decoder_weight > 0:
            with autocast(torch.device("cpu"), precision):
                drawn = decode_latents(vae, block_pca.encode(guide[0], x) / guide[1], clamp=False).float()
            pca_decoder_loss = ((drawn - x) ** 2).mean()
            loss = loss + fade * cfg.pca_decoder_weight * pca_decoder_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        row: dict[str, Any] = {}
        if step % cfg.log_every == 0 or step == cfg.steps:
            psnr = float(10 * torch.log10(4.0 / sq.detach().mean().clamp_min(1e-10)))  # unweighted
            row = {"step": step, "loss": float(loss.detach()), "l1": float(l1.detach()), "psnr": psnr,
                   "kl": float(kl.detach()), "lr": sched.get_last_lr()[0], "long": is_long_step(cfg, step),
                   "seconds": round(time.perf_counter() - t0, 1)}
            if fade > 0 and cfg.pca_weight > 0:
                row["pca"] = float(pca_loss.detach())
            if fade > 0 and cfg.pca_decoder_weight > 0:
                row["pca_decoder_psnr"] = float(10 * torch.log10(4.0 / pca_decoder_loss.detach().clamp_min(1e-10)))
        if eval_clips and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
            vae.eval()
            held = roundtrip_psnr(vae, eval_clips, precision=precision, masks=eval_masks)
            vae.train()
            row = {**(row or {"step": step}), **{f"eval_{k}": v for k, v in held.items()}}
        if row:
            log.write(json.dumps(row) + "\n")
            log.flush()
            text = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                            if k != "eval_psnr_per_latent")
            print(f"[{step}/{cfg.steps}] {text}", flush=True)
        if step % cfg.save_every == 0 and step < cfg.steps:
            save_checkpoint(out, step, {"vae": trainable_state(vae)}, {"vae": opt}, {"config": asdict(cfg)},
                            cfg.keep)
    log.close()
    vae.eval()
    if cfg.decoder_only:  # same encoder, same statistics: keep them exactly
        lat_mean, lat_std = init_config["latents_mean"], init_config["latents_std"]
    else:
        lat_mean, lat_std = latent_stats(vae, dataset, cfg.stats_clips)
    config = dict(cfg.vae, latents_mean=lat_mean, latents_std=lat_std)
    path = out / "vae.safetensors"
    save_vae(vae, config, path)
    print(f"VAE written to {path}")
    return path


def _flag_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    """CLI: every VaeTrainConfig field is a flag (--window-latents 2, --long-every 4, ...)."""
    p = argparse.ArgumentParser(prog="python -m training.train_vae", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared dataset folder (python -m training.prepare)")
    p.add_argument("--out", required=True, help="run folder; vae.safetensors is written there; an interrupted "
                                                "run continues from its newest checkpoint when started again")
    p.add_argument("--vae", default=json.dumps(EMBEDDED_VAE), help="AutoencoderKLWan config as JSON")
    defaults = VaeTrainConfig(data="", out="")
    for f in fields(VaeTrainConfig):
        if f.name in ("data", "out", "vae"):
            continue
        value = getattr(defaults, f.name)
        kind = str if value is None else _flag_bool if isinstance(value, bool) else type(value)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=value,
                       help=f"default {value}" + (" (start from this vae.safetensors)" if f.name == "init" else ""))
    args = vars(p.parse_args(argv))
    try:
        vae_cfg = json.loads(args.pop("vae"))
    except json.JSONDecodeError as exc:
        print(f"error: --vae must be a JSON object: {exc}", file=sys.stderr)
        return 2
    try:
        train_vae(VaeTrainConfig(vae=vae_cfg, **args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
