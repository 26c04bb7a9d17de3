"""EMAGE's per-body-part motion codecs and the assembly of their outputs into SMPL-X motion.

The checkpoint ``H-Liu1997/emage_audio`` ships five small convolutional networks under
``emage_vq/``: VQ-VAEs for ``face`` (jaw 6-D + 100 expression), ``upper`` (13 joints),
``hands`` (30 joints) and ``lower`` (9 joints + translation + foot contact), and a plain
auto-encoder ``global`` that turns the lower-body code into root velocity. Only their decoders
(and the codebooks) are used at inference; the encoders are built so that the files load
strictly. Parameter names follow the checkpoint: ``encoder.main.<i>``, ``quantizer.embedding``,
``decoder.main.<i>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .rotation import axis_angle_to_rot6d, rot6d_to_axis_angle

NUM_JOINTS = 55
JAW_JOINT = 22
# SMPL-X joints that each body-part codec owns (jaw 22 belongs to the face codec; the eyes,
# 23 and 24, belong to no codec and stay at zero rotation).
UPPER_JOINTS = (3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)
LOWER_JOINTS = (0, 1, 2, 4, 5, 7, 8, 10, 11)
HANDS_JOINTS = tuple(range(25, 55))
EXPRESSION_DIM = 100
TRANS_CONTACT_DIM = 7  # root translation (3) then foot contact (4), after the lower body's 6-D

PART_NAMES = ("face", "upper", "hands", "lower")
PART_INPUT_DIMS = {
    "face": 6 + EXPRESSION_DIM,
    "upper": 6 * len(UPPER_JOINTS),
    "hands": 6 * len(HANDS_JOINTS),
    "lower": 6 * len(LOWER_JOINTS) + TRANS_CONTACT_DIM,
    "global": 6 * len(LOWER_JOINTS) + TRANS_CONTACT_DIM,
}
VQ_FOLDER = "emage_vq"
VQ_SUBFOLDERS = ("face", "upper", "lower", "hands", "global")


@dataclass
class EmageVQConfig:
    """One sub-model's ``config.json`` (the fields that shape the network; others kept in ``extra``)."""

    vae_test_dim: int
    vae_length: int = 256
    vae_layer: int = 2
    vae_codebook_size: int = 256
    vae_quantizer_lambda: float = 1.0
    model_type: str = "emage_vqvaeconv"  # "emage_vaeconv" for the global auto-encoder
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, defaults: dict[str, Any] | None = None) -> EmageVQConfig:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        merged = dict(defaults or {})
        merged.update({k: v for k, v in data.items() if k in names})
        if "vae_test_dim" not in merged:
            raise ValueError("EMAGE VQ config needs 'vae_test_dim' (and the weights did not tell it)")
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**merged, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        return out


def vq_config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Shape fields read off a sub-model's weights (used for fields a config.json leaves out)."""
    first = state.get("encoder.main.0.weight")
    if first is None:
        return {}
    out: dict[str, Any] = {"vae_length": int(first.shape[0]), "vae_test_dim": int(first.shape[1])}
    # Encoder layout: [conv, act, res] per layer, so the top-level convs sit at 0, 3, 6, ...
    convs = {int(k.split(".")[2]) for k in state if k.startswith("encoder.main.") and k.count(".") == 3}
    out["vae_layer"] = len({i for i in convs if i % 3 == 0})
    code = state.get("quantizer.embedding.weight")
    if code is not None:
        out["vae_codebook_size"] = int(code.shape[0])
    return out


class ResBlock(nn.Module):
    """x + conv(leaky_relu(conv(x))), kernel 3, same length."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv1d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(channels, channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + x


class SequenceConvNet(nn.Module):
    """A stack of 1-D convolutions over time, applied to (batch, time, channels) tensors."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x.transpose(1, 2)).transpose(1, 2)


def conv_encoder(in_dim: int, width: int, n_layers: int) -> SequenceConvNet:
    """n_layers x [conv k3 -> leaky 0.2 -> residual block]; length preserved."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Conv1d(in_dim if i == 0 else width, width, 3, 1, 1), nn.LeakyReLU(0.2), ResBlock(width)]
    return SequenceConvNet(layers)


def conv_decoder(width: int, out_dim: int, n_layers: int) -> SequenceConvNet:
    """Two residual blocks, n_layers x [conv k3 -> leaky 0.2] ending at out_dim, a final conv."""
    layers: list[nn.Module] = [ResBlock(width), ResBlock(width)]
    dims = [width] * n_layers + [out_dim]
    for i in range(n_layers):
        layers += [nn.Conv1d(dims[i], dims[i + 1], 3, 1, 1), nn.LeakyReLU(0.2)]
    layers.append(nn.Conv1d(out_dim, out_dim, 3, 1, 1))
    return SequenceConvNet(layers)


class Codebook(nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(size, dim)

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        return self.embedding(index)

    def nearest(self, latent: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (squared L2) for each (..., dim) latent vector."""
        flat = latent.reshape(-1, latent.shape[-1])
        codes = self.embedding.weight
        dist = (flat**2).sum(1, keepdim=True) + (codes**2).sum(1) - 2 * flat @ codes.t()
        return dist.argmin(1).reshape(latent.shape[:-1])


class PartVQ(nn.Module):
    """One body part's VQ-VAE (files: emage_vq/<part>/)."""

    def __init__(self, config: EmageVQConfig):
        super().__init__()
        self.config = config
        self.encoder = conv_encoder(config.vae_test_dim, config.vae_length, config.vae_layer)
        self.quantizer = Codebook(config.vae_codebook_size, config.vae_length)
        self.decoder = conv_decoder(config.vae_length, config.vae_test_dim, config.vae_layer)

    def decode_index(self, index: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(index))

    def decode_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Snap each frame's latent to its nearest code, then decode."""
        return self.decode_index(self.quantizer.nearest(latent))


class PartAE(nn.Module):
    """The global-motion auto-encoder (files: emage_vq/global/): lower-body code -> root velocity."""

    def __init__(self, config: EmageVQConfig):
        super().__init__()
        self.config = config
        self.encoder = conv_encoder(config.vae_test_dim, config.vae_length, config.vae_layer)
        self.decoder = conv_decoder(config.vae_length, config.vae_test_dim, config.vae_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def integrate_velocity(velocity: torch.Tensor, start: torch.Tensor, dt: float) -> torch.Tensor:
    """Positions p[0] = start, p[i] = p[i-1] + v[i-1] * dt along axis 1 of a (B, T) tensor."""
    steps = torch.cat([start.reshape(-1, 1), velocity[:, :-1] * dt], dim=1)
    return torch.cumsum(steps, dim=1)


class MotionCodec(nn.Module):
    """The five sub-models together: per-part codes in, full-body SMPL-X motion out."""

    def __init__(self, configs: dict[str, EmageVQConfig]):
        super().__init__()
        self.face = PartVQ(configs["face"])
        self.upper = PartVQ(configs["upper"])
        self.hands = PartVQ(configs["hands"])
        self.lower = PartVQ(configs["lower"])
        self.global_motion = PartAE(configs["global"])

    def part(self, name: str) -> nn.Module:
        return self.global_motion if name == "global" else getattr(self, name)

    def decode(self, codes: dict[str, tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Decode each part from ``codes[part] = ("index", (B, T) long) or ("latent", (B, T, D))``.

        Returns ``poses`` (B, T, 165) axis-angle, ``expression`` (B, T, 100), ``lower_mix``
        (B, T, 61: lower 6-D + translation + contact, the global model's input) and ``motion``
        (B, T, 337: all 55 joints in 6-D, then translation and contact), the generator's own
        motion layout, used to seed the next window.
        """
        out = {}
        for name in PART_NAMES:
            kind, value = codes[name]
            vq = self.part(name)
            out[name] = vq.decode_index(value) if kind == "index" else vq.decode_latent(value)
        face, upper, hands, lower_mix = out["face"], out["upper"], out["hands"], out["lower"]
        b, t = face.shape[:2]

        joints = face.new_zeros(b, t, NUM_JOINTS, 3)
        joints[:, :, list(UPPER_JOINTS)] = rot6d_to_axis_angle(upper.reshape(b, t, -1, 6))
        joints[:, :, list(HANDS_JOINTS)] = rot6d_to_axis_angle(hands.reshape(b, t, -1, 6))
        lower_6d = lower_mix[..., : 6 * len(LOWER_JOINTS)]
        joints[:, :, list(LOWER_JOINTS)] = rot6d_to_axis_angle(lower_6d.reshape(b, t, -1, 6))
        joints[:, :, JAW_JOINT] = rot6d_to_axis_angle(face[..., :6])

        trans_contact = lower_mix[..., -TRANS_CONTACT_DIM:]
        motion = torch.cat([axis_angle_to_rot6d(joints).reshape(b, t, -1), trans_contact], dim=-1)
        return {
            "poses": joints.reshape(b, t, NUM_JOINTS * 3),
            "expression": face[..., 6:],
            "lower_mix": lower_mix,
            "motion": motion,
        }

    def root_translation(self, lower_mix: torch.Tensor, start: torch.Tensor, fps: float) -> torch.Tensor:
        """(B, T, 3) root translation: x and z integrate predicted velocity from ``start`` (B, 3); y is direct."""
        rec = self.global_motion(lower_mix)
        vel = rec[..., 6 * len(LOWER_JOINTS) : 6 * len(LOWER_JOINTS) + 3]
        x = integrate_velocity(vel[..., 0], start[:, 0], 1 / fps)
        z = integrate_velocity(vel[..., 2], start[:, 2], 1 / fps)
        return torch.stack([x, vel[..., 1], z], dim=-1)
