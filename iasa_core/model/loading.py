"""One entry point for stage-2 weights: presets, student checkpoints, Wan files and folders, LoRAs, pose encoders."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .checkpoint import is_student_file, load_student
from .embedded import EMBEDDED_MODELS, EMBEDDED_SCHEDULE, embedded_path
from .pose_wan import PoseWanTransformer
from .presets import PRESETS, PoseWanConfig, get_preset
from .resolve import resolve_model_dir, resolve_model_file
from .system import PoseWanSystem
from .weights import (
    detect_wan_layout,
    infer_wan_config,
    load_state_dict_file,
    merge_lora,
    unianimate_to_ours,
    wan_native_to_diffusers,
)

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def load_pose_weights(denoiser: PoseWanTransformer, path: str | os.PathLike) -> list[str]:
    """Load UniAnimate-DiT pose encoders (``dwpose_embedding.*``, ``randomref_embedding_pose.*``) into ours."""
    state, _ = load_state_dict_file(path)
    pose, _rest = unianimate_to_ours(state)
    if not pose:
        raise ValueError(f"{path} holds no UniAnimate pose-encoder weights (dwpose_embedding.* / "
                         "randomref_embedding_pose.*); pass the UniAnimate-DiT checkpoint")
    ours = {k: v for k, v in denoiser.state_dict().items() if k.startswith(("pose_encoder.", "ref_pose_encoder."))}
    missing = sorted(set(ours) - set(pose))
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(ours[k].shape)}" for k, v in pose.items()
           if k in ours and v.shape != ours[k].shape]
    if missing or bad:
        raise ValueError(f"{path} does not fit this model's pose encoders: missing {missing[:4]}, "
                         f"shape mismatches {bad[:4]} (a 14B pose encoder ends in 5120 channels)")
    denoiser.load_state_dict(pose, strict=False, assign=False)
    return sorted(pose)


def read_diffusers_transformer(folder: Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """The (possibly sharded) safetensors of a diffusers transformer folder, and its head size from config.json.

    Read directly rather than with ``from_pretrained``, which needs ``accelerate`` for Wan's fp32-kept modules.
    """
    sub = folder / "transformer" if (folder / "transformer").is_dir() else folder
    files = sorted(sub.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no transformer weights (*.safetensors) in {sub}; a diffusers Wan folder has "
                                "transformer/config.json and diffusion_pytorch_model*.safetensors")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_state_dict_file(f)[0])
    head_dim = None
    if (sub / "config.json").is_file():
        head_dim = json.loads((sub / "config.json").read_text()).get("attention_head_dim")
    return state, head_dim


def _load_vae(spec: str | os.PathLike | None, config: PoseWanConfig, allow_download: bool):
    from diffusers import AutoencoderKLWan

    if spec is None:
        raise ValueError("this model needs the Wan2.1 VAE: pass vae=<diffusers folder, repo id or "
                         "wan_2.1_vae.safetensors> (ComfyUI keeps it in models/vae/)")
    p = Path(spec).expanduser()
    if p.is_file():
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

        state, _ = load_state_dict_file(p)
        if not any(k.startswith("encoder.conv_in") for k in state):
            state = convert_wan_vae_to_diffusers(state)
        vae = AutoencoderKLWan(**config.vae)
        vae.load_state_dict(state, strict=True)
        return vae
    folder = resolve_model_dir(spec, allow_download=allow_download, what="Wan VAE")
    sub = folder / "vae" if (folder / "vae" / "config.json").is_file() else folder
    return AutoencoderKLWan.from_pretrained(sub)


def _load_image_encoder(spec: str | os.PathLike | None, allow_download: bool):
    from transformers import CLIPVisionModel

    if spec is None:
        raise ValueError("this I2V model needs its CLIP vision encoder: pass image_encoder=<folder or repo id "
                         "with a transformers CLIPVisionModel> (the Wan2.1 I2V diffusers repos have image_encoder/)")
    folder = resolve_model_dir(spec, allow_download=allow_download, what="CLIP vision encoder")
    sub = folder / "image_encoder" if (folder / "image_encoder" / "config.json").is_file() else folder
    return CLIPVisionModel.from_pretrained(sub)


def _from_transformer_state(name: str, state: dict[str, torch.Tensor], pose_weights, vae, image_encoder,
                            allow_download: bool, prompt_embeds: torch.Tensor | None,
                            head_dim: int | None = None) -> PoseWanSystem:
    if detect_wan_layout(state) == "native":
        state = wan_native_to_diffusers(state)
    cfg = infer_wan_config(state, head_dim=head_dim)
    config = PoseWanConfig(name=name, transformer=cfg)
    if cfg.get("image_dim") is None:
        config.image_encoder = None
    with torch.device("meta"):
        denoiser = PoseWanTransformer(config)
    if pose_weights is None:
        raise ValueError(f"{name} is a plain Wan transformer without pose encoders: pass pose_weights=<the "
                         "UniAnimate-DiT checkpoint> (or load an IASA student checkpoint, which has them)")
    denoiser.pose_encoder.to_empty(device="cpu")
    denoiser.ref_pose_encoder.to_empty(device="cpu")
    load_pose_weights(denoiser, pose_weights)
    missing, unexpected = denoiser.transformer.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"{name}: the transformer weights do not fit the inferred config: missing "
                         f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    rope = denoiser.transformer.rope
    denoiser.transformer.rope = WanRotaryPosEmbed(rope.attention_head_dim, rope.patch_size, rope.max_seq_len)
    enc = _load_image_encoder(image_encoder, allow_download) if config.image_encoder is not None else None
    if prompt_embeds is None:
        raise ValueError(f"{name} has no stored prompt: pass prompt_embeds (UMT5 output for your prompt, "
                         f"(tokens, {config.text_dim}))")
    system = PoseWanSystem(config, denoiser, _load_vae(vae, config, allow_download), enc, prompt_embeds,
                           schedule={"kind": "teacher", "shift": 5.0}, source=name)
    return system.eval()


def load_model(spec: str | os.PathLike, *, search_dirs: Iterable[str | os.PathLike] = (),
               allow_download: bool = False, pose_weights: str | os.PathLike | None = None,
               vae: str | os.PathLike | None = None, image_encoder: str | os.PathLike | None = None,
               prompt_embeds: torch.Tensor | None = None, loras: Sequence[tuple[str | os.PathLike, float]] = (),
               seed: int = 0, head_dim: int | None = None) -> PoseWanSystem:
    """Load stage 2 from a preset name, an IASA student file, a Wan single file, a diffusers folder or a repo id.

    Files are looked for locally first (the path, then ``search_dirs``, then the HF cache); the hub is used only
    with ``allow_download``. LoRAs (community Wan or diffusers/peft format) are merged with their strengths.
    """
    from ..validate import finite

    # Strengths are checked before anything loads: a NaN strength would turn every merged weight into NaN.
    loras = [(path, finite(strength, f"strength of LoRA {os.fspath(path)}")) for path, strength in loras]
    text = str(spec)
    if text in EMBEDDED_MODELS:
        system = load_student(embedded_path(text))
        for key, value in EMBEDDED_SCHEDULE.items():
            system.schedule.setdefault(key, value)
    elif text in PRESETS:
        system = PoseWanSystem.random(get_preset(text), seed=seed)
    else:
        path = Path(text).expanduser()
        if path.suffix in WEIGHT_SUFFIXES:
            path = resolve_model_file(text, search_dirs=search_dirs, allow_download=False, what="stage-2 model")
            if is_student_file(path):
                system = load_student(path)
            else:
                state, _ = load_state_dict_file(path)
                system = _from_transformer_state(path.name, state, pose_weights, vae, image_encoder,
                                                 allow_download, prompt_embeds, head_dim)
        elif path.is_dir() or "/" in text:
            folder = resolve_model_dir(text, allow_download=allow_download, what="stage-2 model")
            state, folder_head_dim = read_diffusers_transformer(folder)
            system = _from_transformer_state(folder.name, state, pose_weights, vae or folder,
                                             image_encoder or folder, allow_download, prompt_embeds,
                                             head_dim or folder_head_dim)
        else:
            raise ValueError(f"model {text!r} is neither an embedded model ({', '.join(EMBEDDED_MODELS)}), a preset "
                             f"({', '.join(sorted(PRESETS))}), a weight file "
                             f"({', '.join(WEIGHT_SUFFIXES)}), a folder nor an HF repo id (owner/name)")
    for lora_path, strength in loras:
        lora_file = resolve_model_file(lora_path, search_dirs=search_dirs, what="LoRA")
        state, _ = load_state_dict_file(lora_file)
        merge_lora(system.denoiser.transformer, state, strength=float(strength))
    return system
