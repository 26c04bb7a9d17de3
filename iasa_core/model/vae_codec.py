"""Wan VAE encode/decode in chunks of many latent frames: the same numbers as diffusers' frame-by-frame loop, faster.

diffusers runs the causal Wan VAE one latent frame at a time (4 video frames), carrying a 2-frame cache per
causal convolution. The cache makes the computation a stream, so any chunking of the frames after the first
gives the same result; only the first latent frame must be alone (the temporal up/down-samplers treat it
specially). Larger chunks cut the Python overhead and, on CPU, move small-channel 3-D convolutions from
PyTorch's slow reference kernel to oneDNN (the VAE of the embedded model decodes about 10x faster).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from .cpu_conv import conv3d, use_onednn

# Activations kept per chunk: chunk video frames x H x W x widest channel count, in elements.
CHUNK_ELEMENTS = 1 << 26

# Long videos are decoded in segments of this many latent frames, each re-primed with the first latent frame
# and the DECODE_WARMUP latent frames before it (their pixels discarded). The causal decoder's output drifts
# once its stream has run ~18 latent frames past the first one, whatever the content (measured on the embedded
# VAE: a still image's round trip falls from 28 dB to 16.7 dB after frame ~90; diffusers' own loop agrees);
# re-primed segments keep every frame in the regime it was trained in (the still stays at 27 dB).
DECODE_SEGMENT = 12
DECODE_WARMUP = 3


def _streamable(vae: AutoencoderKLWan) -> bool:
    # Wan2.2's residual blocks stream too: their average-down shortcut pads only the lone first frame, and the
    # duplicate-up shortcut trims only the first chunk, which is decoded alone as in diffusers' loop.
    cfg = vae.config
    return getattr(cfg, "patch_size", None) is None and not getattr(vae, "use_tiling", False)


def chunk_latents(vae: AutoencoderKLWan, height: int, width: int) -> int:
    """How many latent frames to run at once for a video of this size (1 = diffusers' own loop)."""
    widest = vae.config.base_dim * max(vae.config.dim_mult)
    return max(1, CHUNK_ELEMENTS // (4 * height * width * widest))


def _rms_norm_sum(self, x: torch.Tensor) -> torch.Tensor:
    """WanRMS_norm.forward with a plain sum of squares: same values to rounding, 3x faster on CPU.

    Any dtype: the sum of squares is taken in float32 (bfloat16 would lose the small channels' precision)."""
    dim = 1 if self.channel_first else -1
    norm = x.float().square().sum(dim, keepdim=True).sqrt().clamp_min(1e-12)
    out = x * (self.scale / norm).to(x.dtype) * self.gamma.to(x.dtype)
    bias = self.bias
    return out + bias.to(x.dtype) if isinstance(bias, torch.Tensor) else out + bias


def _pointwise_conv(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1x1 WanCausalConv3d as one matrix product (oneDNN's 3-D kernel is slow for it on CPU)."""
    weight = self.weight[:, :, 0, 0, 0]
    if torch.is_autocast_enabled(x.device.type):
        weight, x = weight.to(torch.get_autocast_dtype(x.device.type)), x.to(torch.get_autocast_dtype(x.device.type))
    elif weight.dtype != x.dtype:
        x = x.to(weight.dtype)
    out = torch.einsum("oc,bc...->bo...", weight, x)
    return out + self.bias.to(out.dtype).view(1, -1, 1, 1, 1) if self.bias is not None else out


def _causal_conv(self, x: torch.Tensor, cache_x: torch.Tensor | None = None) -> torch.Tensor:
    """WanCausalConv3d.forward through oneDNN (``cpu_conv``), which also pads the borders in place of a padded copy."""
    if not use_onednn(x, self.weight):
        return type(self).forward(self, x, cache_x)
    width, _, height, _, front, _ = self._padding  # diffusers' F.pad order; the spatial padding is symmetric
    if cache_x is not None and front > 0:
        x = torch.cat([cache_x.to(x.device), x], dim=2)
        front -= cache_x.shape[2]
    if front > 0:
        x = torch.cat([x.new_zeros(*x.shape[:2], front, *x.shape[3:]), x], dim=2)
    # oneDNN's 3-D kernels run ~10 % faster channels-last here; the norms and activations keep the layout
    x = x.contiguous(memory_format=torch.channels_last_3d)
    return conv3d(x, self.weight, self.bias, self.stride, (0, height, width), self.dilation, self.groups)


def _norm_silu_into(norm, x: torch.Tensor, out: torch.Tensor) -> None:
    """silu(WanRMS_norm(x)) written into ``out``: one allocation-free pass per step instead of five copies."""
    length = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(1e-12)
    torch.mul(x, torch.reciprocal_(length).mul_(norm.scale), out=out)
    out.mul_(norm.gamma)
    if isinstance(norm.bias, torch.Tensor):
        out.add_(norm.bias)
    torch.nn.functional.silu(out, inplace=True)


def _norm_silu_conv(norm, conv, x: torch.Tensor, feat_cache: list, feat_idx: list) -> torch.Tensor:
    """conv(silu(norm(x))) with the conv's causal cache, as diffusers' residual block computes it.

    The activation is written straight into the conv's input buffer behind the cached frames (channels-last),
    so the concatenation and layout copies of the plain path disappear; the cache is updated the same way."""
    idx = feat_idx[0]
    cache = feat_cache[idx]
    b, c, t, h, w = x.shape
    width, _, height, _, front, _ = conv._padding
    kept = cache.shape[2] if cache is not None else 0
    zeros = max(front - kept, 0)
    kept = min(kept, front)
    buf = torch.empty((b, c, zeros + kept + t, h, w), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last_3d)
    if zeros:
        buf[:, :, :zeros].zero_()
    if kept:
        buf[:, :, zeros:zeros + kept].copy_(cache[:, :, cache.shape[2] - kept:])
    _norm_silu_into(norm, x, buf[:, :, zeros + kept:])
    # diffusers keeps the last two activations, reaching into the old cache when the chunk has one frame
    tail = 2 if t >= 2 or cache is not None else 1
    feat_cache[idx] = buf[:, :, -tail:].clone()
    feat_idx[0] += 1
    return conv3d(buf, conv.weight, conv.bias, conv.stride, (0, height, width), conv.dilation, conv.groups)


def _residual_block(self, x: torch.Tensor, feat_cache: list | None = None, feat_idx: list = [0]) -> torch.Tensor:  # noqa: B006
    """WanResidualBlock.forward for CPU float32 inference, fused (``_norm_silu_conv``); else the original."""
    if feat_cache is None or torch.is_grad_enabled() or not use_onednn(x, self.conv1.weight) \
            or not isinstance(self.dropout, torch.nn.Dropout) or self.dropout.p:
        return type(self).forward(self, x, feat_cache, feat_idx)
    shortcut = self.conv_shortcut(x)
    x = _norm_silu_conv(self.norm1, self.conv1, x, feat_cache, feat_idx)
    x = _norm_silu_conv(self.norm2, self.conv2, x, feat_cache, feat_idx)
    return x.add_(shortcut)


def _upsample(self, x: torch.Tensor, feat_cache: list | None = None, feat_idx: list = [0]) -> torch.Tensor:  # noqa: B006
    """WanResample.forward for the decoder's up-samplers, keeping the channels-last layout throughout.

    diffusers interleaves the time convolution's two frame sets with ``torch.stack``, which returns a
    channels-first tensor; every later per-frame reshape and the next block's norm then copy or stride across it.
    Here the interleave writes a channels-last tensor, so the 2-D up-sampling runs on views. Same values."""
    if self.mode not in ("upsample2d", "upsample3d") or torch.is_grad_enabled() \
            or not use_onednn(x, self.resample[1].weight):
        return type(self).forward(self, x, feat_cache, feat_idx)
    b, c, t, h, w = x.shape
    if self.mode == "upsample3d" and feat_cache is not None:
        idx = feat_idx[0]
        cached = feat_cache[idx]
        if cached is None:  # the first chunk is not doubled in time (diffusers marks it "Rep")
            feat_cache[idx] = "Rep"
        else:
            rep = isinstance(cached, str)
            keep = x[:, :, -2:].clone()
            if keep.shape[2] < 2:
                keep = torch.cat([torch.zeros_like(keep) if rep else cached[:, :, -1:], keep], dim=2)
            pairs = (self.time_conv(x) if rep else self.time_conv(x, cached)).unflatten(1, (2, c))
            feat_cache[idx] = keep
            x = torch.empty((b, c, 2 * t, h, w), dtype=pairs.dtype, device=pairs.device,
                            memory_format=torch.channels_last_3d)
            x[:, :, 0::2] = pairs[:, 0]
            x[:, :, 1::2] = pairs[:, 1]
            t *= 2
        feat_idx[0] += 1
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # a view of a channels-last x
    out = self.resample(frames)
    return out.view(b, t, *out.shape[1:]).permute(0, 2, 1, 3, 4)


@contextlib.contextmanager
def fast_cpu_layers(vae: AutoencoderKLWan) -> Iterator[None]:
    """Swap the VAE's RMS norms and convolutions for quicker CPU equivalents (same values to rounding).

    The originals are restored on exit."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import (
        WanCausalConv3d,
        WanResample,
        WanResidualBlock,
        WanRMS_norm,
    )

    patched = []
    if next(vae.parameters()).device.type == "cpu":
        for module in vae.modules():
            if isinstance(module, WanResidualBlock):
                module.forward = types.MethodType(_residual_block, module)
            elif isinstance(module, WanResample) and module.mode.startswith("upsample"):
                module.forward = types.MethodType(_upsample, module)
            elif isinstance(module, WanRMS_norm):
                module.forward = types.MethodType(_rms_norm_sum, module)
            elif isinstance(module, WanCausalConv3d) and tuple(module.kernel_size) == (1, 1, 1) \
                    and tuple(module.stride) == (1, 1, 1):
                module.forward = types.MethodType(_pointwise_conv, module)
            elif isinstance(module, WanCausalConv3d):
                module.forward = types.MethodType(_causal_conv, module)
            else:
                continue
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


def _conv_count(vae: AutoencoderKLWan, part: str) -> int:
    counts = getattr(vae, "_cached_conv_counts", None)
    if counts is not None:
        return counts[part]
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in getattr(vae, part).modules())


def encode_moments(vae: AutoencoderKLWan, video: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Pixels (B, 3, 1+4n, H, W) in [-1, 1] -> the posterior's mean and log-variance (B, 2z, 1+n, h, w)."""
    if video.ndim != 5 or (video.shape[2] - 1) % 4:
        raise ValueError(f"video must be (batch, 3, 4n+1 frames, height, width); got {tuple(video.shape)}")
    if not _streamable(vae):
        return vae.encode(video).latent_dist.parameters
    chunk = chunk or chunk_latents(vae, video.shape[-2], video.shape[-1])
    cache: list = [None] * _conv_count(vae, "encoder")
    with fast_cpu_layers(vae):
        outs = [vae.encoder(video[:, :, :1], feat_cache=cache, feat_idx=[0])]
        for start in range(1, video.shape[2], 4 * chunk):
            outs.append(vae.encoder(video[:, :, start:start + 4 * chunk], feat_cache=cache, feat_idx=[0]))
        return vae.quant_conv(torch.cat(outs, dim=2))


def encode_posterior(vae: AutoencoderKLWan, video: torch.Tensor, chunk: int | None = None
                     ) -> DiagonalGaussianDistribution:
    """The VAE posterior of a video, computed in chunks (``vae.encode(video).latent_dist``)."""
    return DiagonalGaussianDistribution(encode_moments(vae, video, chunk))


def decode_latents(vae: AutoencoderKLWan, z: torch.Tensor, chunk: int | None = None, *,
                   clamp: bool = True, segment: int | None = None) -> torch.Tensor:
    """Raw (unnormalised) latents (B, z, F, h, w) -> pixels (B, 3, 1+4(F-1), H, W) clamped to [-1, 1].

    ``clamp=False`` returns the decoder's raw output (training: a clamp has no gradient outside the range);
    ``segment``: re-primed segments of that many latent frames (``StreamDecoder``; generation uses
    ``DECODE_SEGMENT``), None: one causal stream, diffusers' numbers.
    """
    decoder = StreamDecoder(vae, chunk, clamp=clamp, segment=segment)
    outs = decoder.push(z) + decoder.finish()
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


class StreamDecoder:
    """Decode latents handed over in pieces of any length; pixels come out as soon as a chunk is complete.

    The decoder always runs on the same chunks (the first latent frame alone, then ``chunk`` frames at a
    time) whatever the pieces, so a video decoded piece by piece is bit-identical to one decoded whole,
    and memory holds one chunk of pixels instead of the whole video. A VAE that cannot stream (patched or
    tiled) decodes everything at ``finish``.
    """

    def __init__(self, vae: AutoencoderKLWan, chunk: int | None = None, *, clamp: bool = True,
                 segment: int | None = None, warmup: int = DECODE_WARMUP):
        if segment is not None and (segment < 1 or not 0 <= warmup <= segment):
            raise ValueError(f"segment must be >= 1 and warmup in 0..segment; got {segment}, {warmup}")
        self.vae = vae
        self.chunk = chunk
        self.clamp = clamp
        self.segment = segment  # None: one causal stream however long the video (diffusers' numbers)
        self.warmup = warmup
        self.streamable = _streamable(vae)
        self._pending: list[torch.Tensor] = []  # post-quant latents (raw ones when not streamable)
        self._cache: list | None = None  # the causal convolutions' carried frames; None before the first chunk
        self._done = 0  # latent frames decoded so far
        self._first: torch.Tensor | None = None  # post-quant first latent frame, primes every segment
        self._recent: torch.Tensor | None = None  # the last `warmup` post-quant latent frames decoded

    def _check(self, z: torch.Tensor) -> None:
        if z.ndim != 5:
            raise ValueError(f"latents must be (batch, channels, frames, height, width); got {tuple(z.shape)}")

    def push(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Add raw latents (B, z, f, h, w); return the pixel chunks (B, 3, t, H, W) completed by them."""
        self._check(z)
        if not self.streamable:
            if not self.clamp:
                raise ValueError("clamp=False needs a VAE without patching or tiling")
            self._pending.append(z)
            return []
        if self.chunk is None:
            ratio = 2 ** len(self.vae.config.temperal_downsample)
            self.chunk = chunk_latents(self.vae, z.shape[-2] * ratio, z.shape[-1] * ratio)
        with fast_cpu_layers(self.vae):
            self._pending.append(self.vae.post_quant_conv(z))
        return self._run(final=False)

    def finish(self) -> list[torch.Tensor]:
        """Decode what is left (a last, shorter chunk); the decoder cannot be used afterwards."""
        if not self.streamable:
            if not self._pending:
                return []
            z = self._pending[0] if len(self._pending) == 1 else torch.cat(self._pending, dim=2)
            self._pending = []
            return [self.vae.decode(z).sample]
        return self._run(final=True)

    def _take(self, frames: int) -> torch.Tensor:
        """The first ``frames`` pending latent frames, removed from the queue (a view when one piece holds them)."""
        head = self._pending[0]
        if head.shape[2] >= frames:
            # a view of the piece, as the whole-video decode slices one tensor
            taken, rest = head[:, :, :frames], head[:, :, frames:]
            self._pending = ([rest] if rest.shape[2] else []) + self._pending[1:]
            return taken
        parts, need = [], frames
        while need:
            head = self._pending[0]
            n = min(need, head.shape[2])
            parts.append(head[:, :, :n])
            self._pending = ([head[:, :, n:]] if head.shape[2] > n else []) + self._pending[1:]
            need -= n
        return torch.cat(parts, dim=2)

    def _segment_left(self) -> int | None:
        """Latent frames until the next segment starts (None: no segments)."""
        if self.segment is None or self._done == 0:
            return None
        return self.segment - (self._done - 1) % self.segment

    def _reprime(self) -> None:
        """A fresh causal stream fed the first latent frame and the warm-up frames; their pixels are dropped."""
        self._cache = [None] * _conv_count(self.vae, "decoder")
        self.vae.decoder(self._first, feat_cache=self._cache, feat_idx=[0], first_chunk=True)
        if self.warmup and self._recent is not None:
            self.vae.decoder(self._recent, feat_cache=self._cache, feat_idx=[0])

    def _run(self, final: bool) -> list[torch.Tensor]:
        outs = []
        with fast_cpu_layers(self.vae):
            while True:
                have = sum(p.shape[2] for p in self._pending)
                first = self._cache is None
                left = self._segment_left()
                want = 1 if first else min(self.chunk, left) if left is not None else self.chunk
                if have == 0 or (have < want and not final):
                    break
                x = self._take(min(want, have))
                if first:
                    self._cache = [None] * _conv_count(self.vae, "decoder")
                    out = self.vae.decoder(x, feat_cache=self._cache, feat_idx=[0], first_chunk=True)
                    self._first = x
                else:
                    if left is not None and left == self.segment and self._done > 1:  # a later segment starts
                        self._reprime()
                    out = self.vae.decoder(x, feat_cache=self._cache, feat_idx=[0])
                self._done += x.shape[2]
                if self.segment is not None and self.warmup and not first:
                    recent = x if self._recent is None else torch.cat([self._recent, x], dim=2)
                    self._recent = recent[:, :, -self.warmup:]
                outs.append(torch.clamp(out, -1.0, 1.0) if self.clamp else out)
        return outs
