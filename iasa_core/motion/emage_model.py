"""EMAGE's audio-to-motion generator (the network in ``pytorch_model.bin``) and its windowing.

Written from the published architecture; every parameter and buffer name matches the keys
of the ``H-Liu1997/emage_audio`` checkpoint so that it loads strictly. One window of
``pose_length`` frames is processed at a time:

* two 1-D conv audio encoders (face, body) turn 16 kHz samples into one feature per frame;
* a conv "motion hint" encoder reads the window's motion, where unknown frames are replaced
  by a learnt mask embedding (the first ``seed_frames`` frames are known);
* face: a 4-layer transformer decoder whose queries are speaker embedding + a periodic
  positional code and whose memory is audio + motion hint; it predicts a face latent;
* body: a 1-layer transformer encoder over the motion, an 8-layer cross-attention to body
  audio, three MLP heads (upper, hands, lower), each refined by a 1-layer decoder that
  attends to the sum of the other two; each head gives a latent and codebook logits.

Two transformer layers (``transformer_en_layer``, ``audio_motion_cross_attn_layer``) exist in
the checkpoint only as templates the stacks were copied from; they are kept, unused.
Transformers are post-norm, ReLU, 4 heads, feed-forward 2 x hidden, no dropout (inference).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .emage_vq import TRANS_CONTACT_DIM, conv_encoder

NUM_HEADS = 4
CROSS_ATTN_LAYERS = 8
FACE_DECODER_LAYERS = 4
MOTION_HINT_LAYERS = 3


@dataclass
class EmageConfig:
    """The generator's ``config.json``; defaults are those of the released ``emage_audio``.

    Field names are the reference's. ``lf/lu/lh/ll`` and ``cf/cu/ch/cl`` are the training
    weights of the latent and classification losses per part; at inference a part is decoded
    from its codebook index (argmax of the logits) when its ``c*`` weight is > 0, otherwise
    from its latent (nearest code) when its ``l*`` weight is > 0. Unknown keys of a
    config.json are kept in ``extra`` and written back on save.
    """

    pose_fps: int = 30
    motion_f: int = 256
    pose_dims: int = 330
    pose_rep: str = "smplx"
    audio_rep: str = "wave16k"
    audio_sr: int = 16000
    audio_fps: int = 16000
    audio_norm: bool = False
    audio_f: int = 256
    speaker_f: int = 768
    speaker_dims: int = 1
    hidden_size: int = 768
    seed_frames: int = 4
    pose_length: int = 64
    stride: int = 20
    test_length: int = 64
    joint_mask: Any = None
    vae_codebook_size: int = 256
    ll: float = 3
    lf: float = 3
    lu: float = 3
    lh: float = 3
    cl: float = 1
    cf: float = 0
    cu: float = 1
    ch: float = 1
    model_type: str = "emage_audio"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmageConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        cfg = cls(**known, extra=extra)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        return out

    @property
    def motion_dims(self) -> int:
        """Per-frame motion layout of the generator: 55 joints x 6-D, translation, foot contact."""
        return self.pose_dims + TRANS_CONTACT_DIM

    @property
    def samples_per_frame(self) -> int:
        return self.audio_sr // self.pose_fps

    def part_source(self, part: str) -> str | None:
        """Where a part (face/upper/hands/lower) is decoded from: "index", "latent" or None."""
        letter = {"face": "f", "upper": "u", "hands": "h", "lower": "l"}[part]
        if getattr(self, "c" + letter) > 0:
            return "index"
        if getattr(self, "l" + letter) > 0:
            return "latent"
        return None

    def validate(self) -> None:
        if self.hidden_size % NUM_HEADS:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by {NUM_HEADS} heads")
        if self.audio_f % 4:
            raise ValueError(f"audio_f {self.audio_f} must be divisible by 4")
        if not 0 < self.seed_frames < self.pose_length:
            raise ValueError(f"need 0 < seed_frames ({self.seed_frames}) < pose_length ({self.pose_length})")


# --------------------------------------------------------------------------- audio encoder


class ConvBNBlock(nn.Module):
    """Residual block: conv-BN-leaky, conv-BN, + (conv-BN shortcut or identity), leaky."""

    def __init__(self, c_in: int, c_out: int, stride: int, padding: int, project: bool, kernel: int = 15):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.downsample = (
            nn.Sequential(
                nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding), nn.BatchNorm1d(c_out)
            )
            if project
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.leaky_relu(y + shortcut)


class WaveEncoder(nn.Module):
    """Raw 16 kHz samples (B, N) -> (B, frames, out_dim): total stride 540, 1600 zero samples padded."""

    # (input width, output width) as fractions of out_dim, stride, first-conv padding, projection
    _PLAN = (
        (0, 4, 5, 1600, True),
        (4, 4, 6, 0, True),
        (4, 4, 1, 7, False),
        (4, 2, 6, 0, True),
        (2, 2, 1, 7, False),
        (2, 1, 3, 0, True),
    )

    def __init__(self, out_dim: int):
        super().__init__()
        blocks = []
        for c_in, c_out, stride, pad, project in self._PLAN:
            blocks.append(
                ConvBNBlock(1 if c_in == 0 else out_dim // c_in, out_dim // c_out, stride, pad, project)
            )
        self.feat_extractor = nn.Sequential(*blocks)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.feat_extractor(wave.unsqueeze(1)).transpose(1, 2)


class MLP(nn.Module):
    def __init__(self, d_in: int, d_mid: int, d_out: int):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_mid)
        self.fc2 = nn.Linear(d_mid, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.fc1(x), 0.1))


# --------------------------------------------------------------------------- transformer


class PackedAttention(nn.Module):
    """Multi-head attention with one packed q/k/v projection (batch-first tensors)."""

    def __init__(self, dim: int, heads: int = NUM_HEADS):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        if memory is None:
            q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q = F.linear(x, self.in_proj_weight[:d], self.in_proj_bias[:d])
            k, v = F.linear(memory, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(2, dim=-1)

        def heads(z: torch.Tensor) -> torch.Tensor:
            return z.reshape(b, -1, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, ff: int):
        super().__init__()
        self.self_attn = PackedAttention(dim)
        self.linear1 = nn.Linear(dim, ff)
        self.linear2 = nn.Linear(ff, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, ff: int):
        super().__init__()
        self.self_attn = PackedAttention(dim)
        self.multihead_attn = PackedAttention(dim)
        self.linear1 = nn.Linear(dim, ff)
        self.linear2 = nn.Linear(ff, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        x = self.norm2(x + self.multihead_attn(x, memory))
        return self.norm3(x + self.linear2(F.relu(self.linear1(x))))


class LayerStack(nn.Module):
    """``layers.<i>`` of encoder or decoder layers, applied in order, no final norm."""

    def __init__(self, make: Callable[[], nn.Module], n: int):
        super().__init__()
        self.layers = nn.ModuleList(make() for _ in range(n))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x) if memory is None else layer(x, memory)
        return x


class PeriodicPositionalEncoding(nn.Module):
    """Adds a sinusoidal code of period ``period`` frames (stored as buffer ``pe``)."""

    def __init__(self, dim: int, period: int, max_len: int):
        super().__init__()
        pos = torch.arange(period, dtype=torch.float32).unsqueeze(1)
        freq = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
        pe = torch.zeros(period, dim)
        pe[:, 0::2] = torch.sin(pos * freq)
        pe[:, 1::2] = torch.cos(pos * freq)
        self.register_buffer("pe", pe.unsqueeze(0).repeat(1, max_len // period + 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]]


# --------------------------------------------------------------------------- generator

BODY_PARTS = ("upper", "hands", "lower")


class EmageGenerator(nn.Module):
    """One window: audio samples + partly known motion -> per-frame part latents and code logits."""

    def __init__(self, cfg: EmageConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        h, codes = cfg.hidden_size, cfg.vae_codebook_size

        def enc_layer() -> EncoderLayer:
            return EncoderLayer(h, 2 * h)

        def dec_layer() -> DecoderLayer:
            return DecoderLayer(h, 2 * h)

        self.audio_encoder_face = WaveEncoder(cfg.audio_f)
        self.audio_encoder_body = WaveEncoder(cfg.audio_f)
        self.speaker_embedding_body = nn.Embedding(cfg.speaker_dims, h)
        self.speaker_embedding_face = nn.Embedding(cfg.speaker_dims, h)
        self.mask_embedding = nn.Parameter(torch.randn(1, 1, cfg.motion_dims) * h**-0.5)

        self.motion_encoder = conv_encoder(cfg.motion_dims, cfg.motion_f, MOTION_HINT_LAYERS)
        self.bodyhints_face = MLP(cfg.motion_f, h, cfg.motion_f)
        self.bodyhints_body = MLP(cfg.motion_f, h, cfg.motion_f)
        self.audio_body_motion_proj = nn.Linear(cfg.audio_f, h)
        self.moton_proj = nn.Linear(cfg.motion_f, h)  # sic: checkpoint key
        self.position_embeddings = PeriodicPositionalEncoding(h, cfg.pose_length, cfg.pose_length)

        self.transformer_en_layer = enc_layer()  # template only (unused)
        self.motion_self_encoder = LayerStack(enc_layer, 1)
        self.audio_motion_cross_attn_layer = dec_layer()  # template only (unused)
        self.audio_motion_cross_attn = LayerStack(dec_layer, CROSS_ATTN_LAYERS)
        for part in BODY_PARTS:
            setattr(self, f"motion2latent_{part}", MLP(h, h, h))
        for part in BODY_PARTS:
            setattr(self, f"body_motion_decoder_{part}", LayerStack(dec_layer, 1))
        for part in BODY_PARTS:
            setattr(self, f"motion_out_proj_{part}", nn.Linear(h, codes))
        for part in BODY_PARTS:
            setattr(self, f"motion_cls_{part}", MLP(codes, h, codes))

        self.audio_face_motion_proj = nn.Linear(cfg.audio_f + cfg.motion_f, h)
        self.face_motion_decoder = LayerStack(dec_layer, FACE_DECODER_LAYERS)
        self.face_out_proj = nn.Linear(h, codes)
        self.face_cls = MLP(codes, h, codes)

    def forward(
        self, audio: torch.Tensor, speaker: torch.Tensor, motion: torch.Tensor, known: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """audio (B, samples); speaker (B,) long; motion (B, T, motion_dims); known (B, T) bool.

        Returns ``rec_<part>`` (B, T, codebook) latents and ``cls_<part>`` (B, T, codebook)
        logits for part in face/upper/hands/lower.
        """
        t = motion.shape[1]
        motion = torch.where(known[..., None], motion, self.mask_embedding.expand_as(motion))
        hint = self.motion_encoder(motion)
        hint_body = self.bodyhints_body(hint)
        hint_face = self.bodyhints_face(hint)
        # The face stream keeps exactly T audio frames; the body stream attends to all audio
        # frames the encoder produced (a short window yields one or two extra), as released.
        audio_face = self.audio_encoder_face(audio)[:, :t]
        audio_body = self.audio_encoder_body(audio)
        spk_body = self.speaker_embedding_body(speaker)[:, None].expand(-1, t, -1)
        spk_face = self.speaker_embedding_face(speaker)[:, None].expand(-1, t, -1)
        pos = self.position_embeddings

        face_memory = self.audio_face_motion_proj(torch.cat([audio_face, hint_face], dim=2))
        face = self.face_motion_decoder(pos(spk_face), face_memory)
        rec_face = self.face_out_proj(face)

        body = pos(self.moton_proj(hint_body)) + spk_body
        body = self.motion_self_encoder(body)
        body = pos(body + spk_body)
        body = body + self.audio_motion_cross_attn(body, self.audio_body_motion_proj(audio_body))

        latents = {p: getattr(self, f"motion2latent_{p}")(body) for p in BODY_PARTS}
        out = {"rec_face": rec_face, "cls_face": self.face_cls(rec_face)}
        for p in BODY_PARTS:
            a, b = (q for q in BODY_PARTS if q != p)
            refine = getattr(self, f"body_motion_decoder_{p}")(latents[p] + spk_body, latents[a] + latents[b])
            rec = getattr(self, f"motion_out_proj_{p}")(latents[p] + refine)
            out[f"rec_{p}"] = rec
            out[f"cls_{p}"] = getattr(self, f"motion_cls_{p}")(rec)
        return out


# --------------------------------------------------------------------------- windowing


@dataclass(frozen=True)
class Window:
    """Frames [start, end) are generated; the first ``keep`` of them go to the output."""

    start: int
    end: int
    keep: int


def plan_windows(
    total: int, window: int = 64, seed: int = 4, *, reference_tail: bool = False
) -> list[Window]:
    """Windows of ``window`` frames advancing ``window - seed``; each keeps all but its last
    ``seed`` frames, which become the next window's known seed. The last window is shorter
    and keeps everything.

    The released code runs that last window only when more than ``seed`` frames remain after
    the full windows, so it drops the final 4..8 frames when ``(total - seed) % (window - seed)
    <= seed``; ``reference_tail=True`` reproduces that. The default covers all ``total`` frames:
    a short last window (5..8 frames) when 1..4 frames remain, and when none remain the last
    full window keeps all its frames.
    """
    if total < 1:
        raise ValueError(f"need at least one frame of motion, got {total}")
    if not 0 < seed < window:
        raise ValueError(f"need 0 < seed ({seed}) < window ({window})")
    step = window - seed
    rounds = max(total - seed, 0) // step
    plan = [Window(i * step, i * step + window, step) for i in range(rounds)]
    tail_start = rounds * step
    remain = total - tail_start - seed
    if not plan or remain > (seed if reference_tail else 0):
        plan.append(Window(tail_start, total, total - tail_start))
    elif remain == 0 and not reference_tail:
        last = plan[-1]  # ends exactly at the last frame: keep its seed frames too
        plan[-1] = Window(last.start, last.end, last.end - last.start)
    return plan


WindowStep = Callable[[Window, torch.Tensor], tuple[dict[str, torch.Tensor], torch.Tensor]]


def run_windows(
    total: int,
    first_seed: torch.Tensor,
    step: WindowStep,
    *,
    window: int = 64,
    seed: int = 4,
    reference_tail: bool = False,
) -> dict[str, torch.Tensor]:
    """Run ``step`` over :func:`plan_windows` and stitch the kept frames along axis 0.

    ``step(win, seed_rows)`` gets the known motion rows for the window's first frames
    (``first_seed[:seed]`` for the first window, then the previous window's decoded rows for
    its last ``seed`` frames) and returns (per-frame outputs, each (n, ...), decoded motion (n, C)).
    """
    plan = plan_windows(total, window, seed, reference_tail=reference_tail)
    pieces: dict[str, list[torch.Tensor]] = {}
    seed_rows = first_seed[:seed]
    for win in plan:
        n = win.end - win.start
        outputs, decoded = step(win, seed_rows[:n])
        for key, value in outputs.items():
            pieces.setdefault(key, []).append(value[: win.keep])
        seed_rows = decoded[n - seed :] if n > seed else decoded
    return {key: torch.cat(values, dim=0) for key, values in pieces.items()}
