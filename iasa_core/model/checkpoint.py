"""Our student checkpoint: one safetensors file with its config, default schedule and sparse settings in the metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..validate import finite_tensors
from .presets import PoseWanConfig
from .system import DEFAULT_SCHEDULE, DEFAULT_SPARSE, PoseWanSystem, build_image_encoder

FORMAT = "iasa-student"
FORMAT_VERSION = "1"
_PARTS = ("denoiser", "vae", "image_encoder")


def save_student(system: PoseWanSystem, path: str | os.PathLike, *, include_vae: bool = True,
                 storage_dtype: torch.dtype | None = None) -> Path:
    """Write every weight of ``system`` (prefixed by part) and its settings as safetensors metadata.

    ``storage_dtype`` (e.g. float16) stores floating-point weights smaller; loading casts them back to float32.
    """
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    parts = {"denoiser": system.denoiser, "vae": system.vae if include_vae else None,
             "image_encoder": system.image_encoder}
    for name, module in parts.items():
        if module is None:
            continue
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().contiguous().cpu()
    tensors["prompt_embeds"] = system.prompt_embeds.detach().contiguous().cpu()
    metadata = {}
    if storage_dtype is not None:
        tensors = {k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in tensors.items()}
        metadata["storage_dtype"] = str(storage_dtype).removeprefix("torch.")
    metadata.update({"format": FORMAT, "format_version": FORMAT_VERSION,
                     "config": json.dumps(system.config.to_dict()), "schedule": json.dumps(system.schedule),
                     "sparse": json.dumps(system.sparse)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors header metadata ({} when there is none)."""
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def is_student_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file written by ``save_student``."""
    p = Path(path)
    if p.suffix != ".safetensors" or not p.is_file():
        return False
    try:
        return read_metadata(p).get("format") == FORMAT
    except Exception:  # not a readable safetensors file: the caller reports what it expected
        return False


def _assign(module: torch.nn.Module, state: dict[str, torch.Tensor], part: str, path: Path) -> None:
    """Load a meta-device module's weights by assignment (no random init, no second copy in memory)."""
    missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit the model its metadata describes ({part}): missing {sorted(missing)[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {sorted(unexpected)[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}; the file is damaged or was written by another version")


def _rebuild_unsaved_buffers(denoiser: torch.nn.Module, image_encoder: torch.nn.Module | None) -> None:
    """Recreate the non-persistent buffers that were built on the meta device (rotary tables, position ids)."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    rope = denoiser.transformer.rope
    denoiser.transformer.rope = WanRotaryPosEmbed(rope.attention_head_dim, rope.patch_size, rope.max_seq_len)
    if image_encoder is not None:
        emb = getattr(image_encoder, "vision_model", image_encoder).embeddings  # transformers 4 nests it
        emb.register_buffer("position_ids", torch.arange(emb.num_positions).expand((1, -1)), persistent=False)
    for module in (denoiser, image_encoder):
        if module is None:
            continue
        left = [n for n, b in module.named_buffers() if b.is_meta]
        if left:
            raise RuntimeError(f"buffers {left} were not restored after loading; this is a bug, please report it")


def load_student(path: str | os.PathLike, *, vae: torch.nn.Module | None = None) -> PoseWanSystem:
    """Load a student checkpoint in one call; ``vae`` supplies the VAE when the file was saved without one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student checkpoint {path} does not exist")
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an IASA student checkpoint (its safetensors metadata has no "
                         f"format={FORMAT!r}); load Wan files with load_model instead")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has student format version {meta.get('format_version')!r}; this code reads "
                         f"version {FORMAT_VERSION}")
    config = PoseWanConfig.from_dict(json.loads(meta["config"]))
    from diffusers import AutoencoderKLWan

    from .pose_wan import PoseWanTransformer

    with torch.device("meta"):
        denoiser = PoseWanTransformer(config)
        image_encoder = build_image_encoder(config.image_encoder)
        own_vae = AutoencoderKLWan(**config.vae) if vae is None else None
    states: dict[str, dict[str, torch.Tensor]] = {p: {} for p in _PARTS}
    prompt = None
    widen = "storage_dtype" in meta  # stored small to save space: compute in float32 as trained
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key == "prompt_embeds":
                prompt = f.get_tensor(key).float() if widen else f.get_tensor(key)
                continue
            part, _, rest = key.partition(".")
            if part not in states:
                raise ValueError(f"{path} holds an unexpected tensor {key!r}")
            # Tensors read from the file are not 64-byte aligned; BLAS then sums in another order and the
            # outputs differ in the last bit. A copy is aligned, so a reloaded student is bit-identical.
            tensor = f.get_tensor(key)
            states[part][rest] = tensor.float() if widen and tensor.is_floating_point() else tensor.clone()
    if prompt is None:
        raise ValueError(f"{path} has no prompt_embeds tensor; the file is incomplete")
    finite_tensors([("prompt_embeds", prompt)] + [(f"{part}.{key}", value) for part, state in states.items()
                                                   for key, value in state.items()], str(path))
    if vae is None and not states["vae"]:
        raise ValueError(f"{path} was saved without its VAE; pass the Wan2.1 VAE (vae=...) to load it")
    _assign(denoiser, states["denoiser"], "denoiser", path)
    if own_vae is not None:
        _assign(own_vae, states["vae"], "vae", path)
        vae = own_vae
    if image_encoder is not None:
        _assign(image_encoder, states["image_encoder"], "image_encoder", path)
    _rebuild_unsaved_buffers(denoiser, image_encoder)
    system = PoseWanSystem(config, denoiser, vae, image_encoder, prompt,
                           schedule=json.loads(meta.get("schedule") or json.dumps(DEFAULT_SCHEDULE)),
                           sparse=json.loads(meta.get("sparse") or json.dumps(DEFAULT_SPARSE)), source=str(path))
    return system.eval()


def rewrite_denoiser(src: str | os.PathLike, dst: str | os.PathLike,
                     change: Callable[[torch.nn.Module], torch.nn.Module]) -> tuple[PoseWanConfig, Path]:
    """Load an IASA model file, swap its denoiser for ``change(denoiser)`` and save the whole model to ``dst``.

    Returns the model's config before the change and the written path; all but the denoiser is kept as it was."""
    system = load_student(src)
    before = system.config
    system.denoiser = change(system.denoiser)
    system.config = system.denoiser.config
    return before, save_student(system, Path(dst))
