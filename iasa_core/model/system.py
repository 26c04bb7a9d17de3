"""The whole stage-2 model: pose-conditioned denoiser, Wan VAE, CLIP-vision encoder and the stored prompt."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from torch import nn
from torch.nn import functional as F

from ..pose.layout import ALL_REGIONS
from ..pose.render import RenderStyle
from .pose_wan import Condition, PoseWanTransformer
from .presets import PoseWanConfig
from .vae_codec import DECODE_SEGMENT, StreamDecoder, decode_latents, encode_posterior

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_SCHEDULE = {"kind": "student", "timesteps": [1000, 750, 500, 250], "shift": 5.0}
# Settings of how the model's pose images are drawn, stored with its schedule: a model must be run on pose images
# drawn the way it was trained on (UniAnimate's weights: R/B swapped, no face; the embedded models: see the README).
POSE_RENDER_KEYS = ("pose_bgr", "pose_face", "pose_mouth")
DEFAULT_SPARSE = {"top_k": 2, "block_size": 128, "mode": "exact", "regions": list(ALL_REGIONS), "local": True,
                  "sink_first": False, "causal": True}


def build_image_encoder(config: dict[str, Any] | None) -> nn.Module | None:
    """A transformers CLIPVisionModel from a config dict (Wan uses its penultimate hidden states)."""
    if config is None:
        return None
    from transformers import CLIPVisionConfig, CLIPVisionModel

    return CLIPVisionModel(CLIPVisionConfig(**config))


@dataclass
class PoseWanSystem:
    """Everything stage 2 runs, with the student's default schedule and sparse settings."""

    config: PoseWanConfig
    denoiser: PoseWanTransformer
    vae: AutoencoderKLWan
    image_encoder: nn.Module | None
    prompt_embeds: torch.Tensor  # (L <= text_len, text_dim): the prompt the student was distilled with
    schedule: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SCHEDULE))
    sparse: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPARSE))
    source: str = ""

    @classmethod
    def random(cls, config: PoseWanConfig, seed: int = 0) -> PoseWanSystem:
        """Randomly initialised modules (tests, benchmarks, the untrained tiny preset)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            denoiser = PoseWanTransformer(config)
            vae = AutoencoderKLWan(**config.vae)
            image_encoder = build_image_encoder(config.image_encoder)
            prompt = torch.randn(min(16, config.text_len), config.text_dim) * 0.1
        system = cls(config, denoiser, vae, image_encoder, prompt, source=f"preset {config.name} (random weights)")
        system.eval()
        return system

    def pose_style(self, bgr: bool | None = None) -> RenderStyle:
        """How this model's pose images are drawn (its schedule's ``pose_bgr`` / ``pose_face`` / ``pose_mouth``);
        ``bgr`` overrides."""
        return RenderStyle(bgr=bool(self.schedule.get("pose_bgr", False)) if bgr is None else bool(bgr),
                           face=bool(self.schedule.get("pose_face", False)),
                           mouth=bool(self.schedule.get("pose_mouth", False)))

    def pose_render_settings(self) -> dict[str, bool]:
        """The schedule's pose-drawing keys, for a model trained from this one to store."""
        return {k: bool(self.schedule[k]) for k in POSE_RENDER_KEYS if k in self.schedule}

    def eval(self) -> PoseWanSystem:
        """Inference mode for every module."""
        for m in self.modules():
            m.eval().requires_grad_(False)
        return self

    def modules(self) -> list[nn.Module]:
        """The torch modules, skipping absent ones."""
        return [m for m in (self.denoiser, self.vae, self.image_encoder) if m is not None]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PoseWanSystem:
        """Move the denoiser (in ``dtype``), the VAE and the image encoder (kept in float32 on CPU)."""
        device = torch.device(device) if device is not None else self.device
        self.denoiser.to(device=device, dtype=dtype)
        # The VAE and CLIP run once per video; fp32 keeps their outputs stable at little cost.
        vae_dtype = dtype if (dtype is not None and device.type == "cuda") else torch.float32
        for module in (self.vae, self.image_encoder):
            if module is None:
                continue
            if next(module.parameters()).dtype == vae_dtype:
                module.to(device=device)  # diffusers warns on any dtype cast, even a no-op one
            else:
                module.to(device=device, dtype=vae_dtype)
        self.prompt_embeds = self.prompt_embeds.to(device)
        return self

    @property
    def device(self) -> torch.device:
        """Where the denoiser lives."""
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The denoiser's parameter dtype."""
        return next(self.denoiser.parameters()).dtype

    # -- conditioning -------------------------------------------------------------------------------

    def text_context(self, prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """(1, text_len, text_dim): the prompt padded with zeros the way Wan pads its UMT5 output."""
        emb = self.prompt_embeds if prompt_embeds is None else prompt_embeds
        if emb.ndim == 3:
            emb = emb[0]
        if emb.ndim != 2 or emb.shape[1] != self.config.text_dim:
            raise ValueError(f"prompt embeddings must be (tokens, {self.config.text_dim}); got {tuple(emb.shape)}")
        emb = emb[: self.config.text_len]
        out = torch.zeros(1, self.config.text_len, self.config.text_dim, device=self.device, dtype=self.dtype)
        out[0, : emb.shape[0]] = emb.to(self.device, self.dtype)
        return out

    def image_context(self, image: np.ndarray) -> torch.Tensor | None:
        """CLIP-vision penultimate hidden states of the reference image, (1, N, image_dim)."""
        if self.image_encoder is None:
            return None
        enc = self.image_encoder
        size = enc.config.image_size
        p = next(enc.parameters())
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float() / 255.0
        h, w = x.shape[-2:]
        scale = size / min(h, w)
        x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                          antialias=True, align_corners=False)
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top:top + size, left:left + size].clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        x = ((x - mean) / std).to(p.device, p.dtype)
        hidden = enc(pixel_values=x, output_hidden_states=True).hidden_states[-2]
        return hidden.to(self.device, self.dtype)

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.vae.config.latents_mean, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
        return mean, std

    def vae_autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the float32 VAE on a CPU when the denoiser runs in bf16 (2-3x quicker there)."""
        vp = next(self.vae.parameters())
        if vp.device.type == "cpu" and vp.dtype == torch.float32 and self.dtype == torch.bfloat16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, T, H, W) in [-1, 1] -> normalised latents (B, z, F, h, w) (the VAE's mode)."""
        vp = next(self.vae.parameters())
        with self.vae_autocast():
            latents = encode_posterior(self.vae, video.to(vp.device, vp.dtype)).mode().to(vp.dtype)
        mean, std = self._latent_stats(latents)
        return (latents - mean) / std

    def decode_tensor(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, z, F, h, w) -> pixels (B, 3, T, H, W) in [-1, 1]; differentiable."""
        vp = next(self.vae.parameters())
        x = latents.to(vp.device, vp.dtype)
        mean, std = self._latent_stats(x)
        with self.vae_autocast():
            return decode_latents(self.vae, x * std + mean).to(vp.dtype)

    def image_condition(self, image: np.ndarray, num_frames: int) -> torch.Tensor:
        """I2V condition y (1, 4 + z, F, h, w): a first-frame mask over the latents of [image, black, ...]."""
        img = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 127.5 - 1.0
        video = torch.zeros(1, 3, num_frames, *img.shape[-2:])
        video[0, :, 0] = img
        latents = self.encode(video)
        f, h, w = latents.shape[2:]
        mask = torch.zeros(1, 4, f, h, w, device=latents.device, dtype=latents.dtype)
        mask[:, :, 0] = 1.0  # all four frame slots of the first latent frame are the given image
        return torch.cat([mask, latents], dim=1).to(self.device, self.dtype)

    def condition(self, image: np.ndarray, num_frames: int, prompt_embeds: torch.Tensor | None = None
                  ) -> Condition:
        """Reference image + prompt -> the denoiser's Condition for a clip of ``num_frames`` frames."""
        return Condition(self.image_condition(image, num_frames), self.text_context(prompt_embeds),
                         self.image_context(image))

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents (1, z, F, h, w) -> frames (T, H, W, 3) uint8."""
        chunks = list(self.decode_frames([latents]))
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def decode_frames(self, latents: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        """Consecutive pieces of latents (1, z, f, h, w) -> frames (t, H, W, 3) uint8, a chunk at a time.

        The VAE runs on the same chunks however the latents are cut, so the frames equal ``decode``'s."""
        vp = next(self.vae.parameters())
        decoder = StreamDecoder(self.vae, segment=DECODE_SEGMENT)

        def frames(video: torch.Tensor) -> np.ndarray:
            pixels = ((video.to(vp.dtype)[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            return pixels.permute(1, 2, 3, 0).cpu().numpy()

        for piece in latents:
            x = piece.to(vp.device, vp.dtype)
            mean, std = self._latent_stats(x)
            # autocast is entered per call, never held across a yield: it is thread state the caller shares
            with torch.no_grad(), self.vae_autocast():
                ready = decoder.push(x * std + mean)
            for video in ready:
                yield frames(video)
        with torch.no_grad(), self.vae_autocast():
            ready = decoder.finish()
        for video in ready:
            yield frames(video)
