"""Named model configurations: the 14B teacher size, a 1.3B-sized variant for speed tests, and ``tiny``."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

# Wan2.1 latent statistics are part of the VAE config; diffusers' defaults are the released values.
_WAN_VAE = {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
            "temperal_downsample": [False, True, True]}
_CLIP_VIT_H = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
               "num_attention_heads": 16, "image_size": 224, "patch_size": 14, "projection_dim": 1024,
               "hidden_act": "gelu", "layer_norm_eps": 1e-5}


def _wan_transformer(heads: int, layers: int, ffn: int, head_dim: int = 128, text_dim: int = 4096,
                     image_dim: int = 1280, freq_dim: int = 256) -> dict[str, Any]:
    dim = heads * head_dim
    return {"patch_size": [1, 2, 2], "num_attention_heads": heads, "attention_head_dim": head_dim,
            "in_channels": 36, "out_channels": 16, "text_dim": text_dim, "freq_dim": freq_dim,
            "ffn_dim": ffn, "num_layers": layers, "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": image_dim,
            "added_kv_proj_dim": dim, "rope_max_seq_len": 1024}


@dataclass
class PoseWanConfig:
    """Everything needed to build the pose-conditioned I2V model's modules (no weights)."""

    name: str
    transformer: dict[str, Any]
    vae: dict[str, Any] = field(default_factory=lambda: dict(_WAN_VAE))
    image_encoder: dict[str, Any] | None = field(default_factory=lambda: dict(_CLIP_VIT_H))
    pose_hidden: int = 16
    # Pose tokens also enter every block through a zero-initialised linear map each (ControlNet-style), not
    # only once after patchify (UniAnimate's way). Off in every shipped model; `training.widen_pose --blocks`
    # adds it to a trained one for fine-tuning.
    pose_blocks: bool = False
    # The reference image's latent in the I2V condition of every latent frame, not only the first (the mask
    # channels still mark frame 0 alone as given). Wan2.1 puts it in frame 0 only, so a small DiT must carry it
    # to every frame through attention; here each token finds it in place. Off for Wan checkpoints; set by
    # `training.init_model --ref-every-frame` on embedded models trained with it.
    ref_every_frame: bool = False
    text_len: int = 512  # diffusers' Wan I2V processor splits image/text context at 512 text tokens

    @property
    def dim(self) -> int:
        """Transformer width (heads x head_dim)."""
        return self.transformer["num_attention_heads"] * self.transformer["attention_head_dim"]

    @property
    def text_dim(self) -> int:
        """Width of the prompt embeddings the model takes."""
        return self.transformer["text_dim"]

    @property
    def condition_channels(self) -> int:
        """Channels of the I2V condition y (4 mask + latent channels)."""
        return self.transformer["in_channels"] - self.transformer["out_channels"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (without ``pose_blocks``/``ref_every_frame`` when off, so files stay readable by code
        that predates them)."""
        out = copy.deepcopy(asdict(self))
        for flag in ("pose_blocks", "ref_every_frame"):
            if not out[flag]:
                del out[flag]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoseWanConfig:
        """Inverse of ``to_dict``; unknown keys are an error so typos do not pass silently."""
        known = {"name", "transformer", "vae", "image_encoder", "pose_hidden", "pose_blocks", "ref_every_frame",
                 "text_len"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"model config has unknown keys {sorted(extra)}; expected {sorted(known)}")
        return cls(**copy.deepcopy(data))


PRESETS: dict[str, PoseWanConfig] = {
    "wan2.1-i2v-14b": PoseWanConfig("wan2.1-i2v-14b", _wan_transformer(heads=40, layers=40, ffn=13824)),
    # The 1.3B release is text-to-video only; this keeps its width/depth with the I2V inputs, for speed tests.
    "wan2.1-1.3b": PoseWanConfig("wan2.1-1.3b", _wan_transformer(heads=12, layers=30, ffn=8960)),
    # Same classes, CPU-sized: for tests and the CPU demo.
    "tiny": PoseWanConfig(
        "tiny", _wan_transformer(heads=2, layers=2, ffn=48, head_dim=12, text_dim=16, image_dim=16,
                                 freq_dim=16),
        vae={"base_dim": 8, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1,
             "temperal_downsample": [False, True, True]},
        image_encoder={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14, "projection_dim": 16,
                       "hidden_act": "gelu", "layer_norm_eps": 1e-5},
    ),
    # The embedded default's architecture (trained on the synthetic world, shipped in iasa_core/weights).
    # VAE: 8 base channels at full resolution (cheap to decode), widening to 64 at 1/8 where the shapes are
    # decided; num_res_blocks 1. DiT 6 x 32 heads. Pose encoder 8 channels wide (4 could not carry the face and
    # fingers through its 16-pixel patches).
    "cpu-small": PoseWanConfig(
        "cpu-small", _wan_transformer(heads=6, layers=6, ffn=768, head_dim=32, text_dim=16, image_dim=32,
                                     freq_dim=64),
        vae={"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 8], "num_res_blocks": 1,
             "temperal_downsample": [False, True, True]},
        image_encoder={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 56, "patch_size": 14, "projection_dim": 32,
                       "hidden_act": "gelu", "layer_norm_eps": 1e-5},
        pose_hidden=8,
    ),
    # CPU benchmark size: wide enough that attention dominates at ~8k tokens, two layers to stay quick.
    "bench-cpu": PoseWanConfig("bench-cpu", _wan_transformer(heads=12, layers=2, ffn=1536, head_dim=64,
                                                              text_dim=64, image_dim=64, freq_dim=64),
                               image_encoder=None),
}


def get_preset(name: str) -> PoseWanConfig:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PoseWanConfig.from_dict(PRESETS[name].to_dict())
