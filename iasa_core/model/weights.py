"""State-dict functions for Wan2.1: key layouts, config inference, file loading, LoRA merging.

Everything here works on plain ``dict[str, torch.Tensor]`` and needs none of our model classes.
Two key layouts exist for the same Wan2.1 transformer:

* native: the original Wan2.1 release, also what ComfyUI users keep
  (``blocks.0.self_attn.q.weight``, optionally under ``model.diffusion_model.``);
* diffusers: ``WanTransformer3DModel`` (``blocks.0.attn1.to_q.weight``).

Both layouts hold exactly the same tensors with the same shapes; only the names differ.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..validate import finite_tensors

logger = logging.getLogger(__name__)

__all__ = [
    "LoraDelta",
    "detect_wan_layout",
    "diffusers_to_wan_native",
    "infer_wan_config",
    "load_state_dict_file",
    "merge_lora",
    "native_module_to_diffusers",
    "diffusers_module_to_native",
    "parse_lora",
    "unianimate_to_ours",
    "wan_native_to_diffusers",
]

# --------------------------------------------------------------------------------------
# Name tables (native -> diffusers). Modules first, then bare nn.Parameters.
# --------------------------------------------------------------------------------------

_TOP_MODULES: dict[str, str] = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "head.head": "proj_out",
}
_TOP_PARAMS: dict[str, str] = {
    "head.modulation": "scale_shift_table",
    # Only in FLF2V checkpoints (two CLIP images, learned position embedding).
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
}
_BLOCK_MODULES: dict[str, str] = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    # Native norm3 is the affine cross-attention norm; diffusers calls it norm2
    # (native norm1/norm2 and diffusers norm1/norm3 carry no parameters).
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_BLOCK_PARAMS: dict[str, str] = {"modulation": "scale_shift_table"}

_INV_TOP_MODULES = {v: k for k, v in _TOP_MODULES.items()}
_INV_TOP_PARAMS = {v: k for k, v in _TOP_PARAMS.items()}
_INV_BLOCK_MODULES = {v: k for k, v in _BLOCK_MODULES.items()}
_INV_BLOCK_PARAMS = {v: k for k, v in _BLOCK_PARAMS.items()}

_NATIVE_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
_DIFFUSERS_PREFIXES = ("transformer.",)
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_LEAVES = ("weight", "bias")
# ComfyUI "fp8_scaled" files: a `scaled_fp8` marker plus per-layer scales next to fp8 weights.
_FP8_MARKER = "scaled_fp8"


def _map_path(path: str, top: Mapping[str, str], block: Mapping[str, str]) -> str | None:
    """Rename one dotted path with a top-level table and a per-block table, or None."""
    if path in top:
        return top[path]
    m = _BLOCK_RE.match(path)
    if m and m.group(2) in block:
        return f"blocks.{m.group(1)}.{block[m.group(2)]}"
    return None


def native_module_to_diffusers(path: str) -> str | None:
    """Diffusers name of a native Wan module or bare parameter path, or None if unknown."""
    return _map_path(path, {**_TOP_MODULES, **_TOP_PARAMS}, {**_BLOCK_MODULES, **_BLOCK_PARAMS})


def diffusers_module_to_native(path: str) -> str | None:
    """Native Wan name of a diffusers module or bare parameter path, or None if unknown."""
    return _map_path(
        path, {**_INV_TOP_MODULES, **_INV_TOP_PARAMS}, {**_INV_BLOCK_MODULES, **_INV_BLOCK_PARAMS}
    )


def _rename_key(key: str, to_diffusers: bool) -> str | None:
    """Rename one parameter key between layouts, or None when it is not a Wan2.1 key."""
    if to_diffusers:
        top_p, block_p, top_m, block_m = _TOP_PARAMS, _BLOCK_PARAMS, _TOP_MODULES, _BLOCK_MODULES
    else:
        top_p, block_p = _INV_TOP_PARAMS, _INV_BLOCK_PARAMS
        top_m, block_m = _INV_TOP_MODULES, _INV_BLOCK_MODULES
    bare = _map_path(key, top_p, block_p)
    if bare is not None:
        return bare
    module, _, leaf = key.rpartition(".")
    if leaf not in _LEAVES:
        return None
    renamed = _map_path(module, top_m, block_m)
    return None if renamed is None else f"{renamed}.{leaf}"


def _strip_prefix(key: str, prefixes: Iterable[str]) -> str:
    """Remove the first matching prefix from a key."""
    for p in prefixes:
        if key.startswith(p):
            return key[len(p) :]
    return key


def _examples(keys: Iterable[str], n: int = 5) -> str:
    """A short, readable list of example keys for error messages."""
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f" (and {len(keys) - n} more)" if len(keys) > n else "")


def detect_wan_layout(state_dict: Mapping[str, Any]) -> str:
    """Say whether a Wan2.1 state dict uses the 'native' or 'diffusers' layout, or 'unknown'."""
    native = diffusers = 0
    for key in state_dict:
        k = _strip_prefix(key, _NATIVE_PREFIXES + _DIFFUSERS_PREFIXES)
        # patch_embedding has the same name in both layouts, so it decides nothing.
        if k.startswith("patch_embedding."):
            continue
        native += _rename_key(k, to_diffusers=True) is not None
        diffusers += _rename_key(k, to_diffusers=False) is not None
    if native == diffusers == 0:
        return "unknown"
    return "native" if native >= diffusers else "diffusers"


def _dequantize_scaled_fp8(sd: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Fold ComfyUI fp8_scaled per-layer scales into the weights (weight * scale_weight)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key == _FP8_MARKER or key.endswith(".scale_input"):
            continue  # the marker and activation scales only matter to fp8 matmul kernels
        if key.endswith(".scale_weight"):
            continue
        scale = sd.get(key[: -len("weight")] + "scale_weight") if key.endswith(".weight") else None
        if scale is not None:
            value = (value.to(torch.float32) * scale.to(torch.float32)).to(dtype)
        elif value.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            value = value.to(dtype)
        out[key] = value
    return out


def _convert(
    state_dict: Mapping[str, torch.Tensor],
    to_diffusers: bool,
    strict: bool,
) -> dict[str, torch.Tensor]:
    """Rename every key of a state dict between layouts, collecting the unknown ones."""
    src, dst = ("native", "diffusers") if to_diffusers else ("diffusers", "native")
    prefixes = _NATIVE_PREFIXES if to_diffusers else _DIFFUSERS_PREFIXES
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        k = _strip_prefix(key, prefixes)
        new = _rename_key(k, to_diffusers)
        if new is None:
            if strict:
                unknown.append(key)
                continue
            new = key  # pass through untouched, as the caller asked
        if new in out:
            raise ValueError(
                f"Two keys of the {src} state dict map to the same {dst} key {new!r} "
                f"(one of them is {key!r}); the file probably holds the model twice under "
                "different prefixes. Keep one copy."
            )
        out[new] = value
    if unknown:
        layout = detect_wan_layout(state_dict)
        hint = (
            f" It looks like it is already in the {dst} layout: pass it on unchanged."
            if layout == dst
            else " If the file holds more than the transformer, pass strict=False to keep "
            "the extra keys unchanged, or remove them."
        )
        raise ValueError(
            f"{len(unknown)} key(s) of the state dict are not Wan2.1 {src}-layout transformer "
            f"keys: {_examples(unknown)}.{hint}"
        )
    return out


def wan_native_to_diffusers(
    state_dict: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    fp8_dtype: torch.dtype = torch.bfloat16,
) -> dict[str, torch.Tensor]:
    """Rename a native Wan2.1 transformer state dict to diffusers' WanTransformer3DModel keys."""
    sd = {_strip_prefix(k, _NATIVE_PREFIXES): v for k, v in state_dict.items()}
    if _FP8_MARKER in sd or any(k.endswith(".scale_weight") for k in sd):
        # fp8_scaled weights are meaningless without their scales: dequantize once here.
        sd = _dequantize_scaled_fp8(sd, fp8_dtype)
    return _convert(sd, to_diffusers=True, strict=strict)


def diffusers_to_wan_native(
    state_dict: Mapping[str, torch.Tensor], *, strict: bool = True
) -> dict[str, torch.Tensor]:
    """Rename a diffusers WanTransformer3DModel state dict to the native Wan2.1 keys."""
    return _convert(state_dict, to_diffusers=False, strict=strict)


# --------------------------------------------------------------------------------------
# Config inference
# --------------------------------------------------------------------------------------


def _diffusers_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Shapes of a Wan state dict under diffusers names (renames keys only, copies nothing)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for key, value in state_dict.items():
        k = _strip_prefix(key, _NATIVE_PREFIXES + _DIFFUSERS_PREFIXES)
        new = _rename_key(k, to_diffusers=True)
        shapes[new if new is not None else k] = tuple(value.shape)
    return shapes


def infer_wan_config(
    state_dict: Mapping[str, torch.Tensor], *, head_dim: int | None = None
) -> dict[str, Any]:
    """Infer a diffusers WanTransformer3DModel config from tensor shapes (native or diffusers keys)."""
    shapes = _diffusers_shapes(state_dict)
    required = {
        "patch_embedding.weight": "patch embedding",
        "condition_embedder.time_embedder.linear_1.weight": "time embedding",
        "condition_embedder.text_embedder.linear_1.weight": "text embedding",
        "blocks.0.ffn.net.0.proj.weight": "first block's feed-forward",
        "proj_out.weight": "output head",
    }
    missing = [f"{k} ({what})" for k, what in required.items() if k not in shapes]
    if missing:
        raise ValueError(
            "The state dict does not look like a Wan2.1 transformer: it lacks "
            f"{_examples(missing)}. Its keys start with {_examples(sorted(state_dict), 3)}. "
            "Pass the transformer (DiT) weights, not a VAE, text encoder or LoRA file."
        )
    pe = shapes["patch_embedding.weight"]
    dim, in_channels, patch_size = pe[0], pe[1], tuple(pe[2:])
    if head_dim is None:
        if dim % 128:
            raise ValueError(
                f"Cannot tell the attention head size of a Wan model with hidden size {dim} "
                "(released Wan2.1 models use 128, which does not divide it). "
                "Pass head_dim= explicitly."
            )
        head_dim = 128
    if dim % head_dim:
        raise ValueError(f"head_dim={head_dim} does not divide the model's hidden size {dim}.")
    block_ids = {int(m.group(1)) for k in shapes if (m := _BLOCK_RE.match(k))}
    num_layers = max(block_ids) + 1
    if block_ids != set(range(num_layers)):
        gaps = sorted(set(range(num_layers)) - block_ids)
        raise ValueError(
            f"The state dict has transformer blocks up to {num_layers - 1} but lacks blocks "
            f"{gaps[:10]}; the file is incomplete (a partial shard?)."
        )
    added = shapes.get("blocks.0.attn2.add_k_proj.weight")
    image_norm = shapes.get("condition_embedder.image_embedder.norm1.weight")
    pos = shapes.get("condition_embedder.image_embedder.pos_embed")
    return {
        "patch_size": patch_size,
        "num_attention_heads": dim // head_dim,
        "attention_head_dim": head_dim,
        "in_channels": in_channels,
        "out_channels": shapes["proj_out.weight"][0] // math.prod(patch_size),
        "text_dim": shapes["condition_embedder.text_embedder.linear_1.weight"][1],
        "freq_dim": shapes["condition_embedder.time_embedder.linear_1.weight"][1],
        "ffn_dim": shapes["blocks.0.ffn.net.0.proj.weight"][0],
        "num_layers": num_layers,
        "cross_attn_norm": "blocks.0.norm2.weight" in shapes,
        # Wan normalises q/k over all heads at once (RMSNorm of size dim).
        "qk_norm": "rms_norm_across_heads" if "blocks.0.attn1.norm_q.weight" in shapes else None,
        "eps": 1e-6,  # not stored in weights; every released Wan2.1 uses 1e-6
        "image_dim": image_norm[0] if image_norm else None,
        "added_kv_proj_dim": added[1] if added else None,
        "pos_embed_seq_len": pos[1] if pos else None,
    }


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_ACCEPTED = ".safetensors, or PyTorch files (.pt, .pth, .bin, .ckpt) holding plain tensors"


def _unwrap_checkpoint(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Return the tensor dict inside a torch.load result (unwrapping 'state_dict'/'module')."""
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{path} holds a {type(obj).__name__}, not a dictionary of tensors. Accepted: {_ACCEPTED}."
        )
    has_tensors = any(isinstance(v, torch.Tensor) for v in obj.values())
    for wrapper in ("state_dict", "module"):
        if not has_tensors and isinstance(obj.get(wrapper), Mapping):
            return _unwrap_checkpoint(obj[wrapper], path)
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(
            f"{path} contains no tensors (top-level keys: {_examples(map(str, obj))}). Accepted: {_ACCEPTED}."
        )
    dropped = [str(k) for k in obj if not isinstance(obj[k], torch.Tensor)]
    if dropped:
        logger.debug("Ignoring non-tensor entries of %s: %s", path, _examples(dropped))
    return tensors


def load_state_dict_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a weights file to CPU tensors; returns (state_dict, metadata) (metadata only for safetensors)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"Weights file not found: {p}")
    if p.is_dir():
        raise ValueError(
            f"{p} is a folder, not a weights file. Pass one file ({_ACCEPTED}); "
            "for a diffusers-format folder use resolve_model_dir and from_pretrained."
        )
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # the library raises several types for corrupt headers
            raise ValueError(
                f"Could not read {p} as safetensors ({exc}). The file may be truncated or "
                "not really safetensors; download it again."
            ) from exc
        finite_tensors(sd.items(), str(p))
        return sd, metadata
    if suffix in _PICKLE_SUFFIXES:
        try:
            # weights_only: never execute code from a downloaded pickle.
            obj = torch.load(str(p), weights_only=True, map_location="cpu")
        except Exception as exc:
            raise ValueError(
                f"Could not read {p} as a PyTorch weights file ({type(exc).__name__}: {exc}). "
                "Only plain tensors are loaded (weights_only=True); a file with other pickled "
                "objects must be converted to .safetensors first."
            ) from exc
        sd = _unwrap_checkpoint(obj, p)
        finite_tensors(sd.items(), str(p))
        return sd, {}
    raise ValueError(f"Unsupported weights file type {suffix or '(none)'!r} for {p}. Accepted: {_ACCEPTED}.")


# --------------------------------------------------------------------------------------
# LoRA
# --------------------------------------------------------------------------------------


@dataclass
class LoraDelta:
    """Low-rank (and full) weight changes for one module, named in the diffusers layout."""

    module: str
    down: torch.Tensor | None = None  # A, shape (rank, in, *kernel)
    up: torch.Tensor | None = None  # B, shape (out, rank, *1)
    alpha: float | None = None
    diff: torch.Tensor | None = None  # full weight delta
    diff_b: torch.Tensor | None = None  # bias delta
    keys: dict[str, str] = field(default_factory=dict)  # role -> key in the LoRA file

    @property
    def rank(self) -> int | None:
        """The LoRA rank, or None for diff-only entries."""
        return None if self.down is None else int(self.down.shape[0])

    @property
    def scale(self) -> float:
        """alpha / rank when alpha is known, else 1.0 (the usual convention)."""
        if self.alpha is None or self.rank is None:
            return 1.0
        return float(self.alpha) / self.rank

    def first_key(self) -> str:
        """One key of the LoRA file that produced this entry (for error messages)."""
        return next(iter(self.keys.values()), self.module)


_LORA_SUFFIX_RE = re.compile(
    r"^(?P<base>.+)\.(?:(?P<down>lora_A|lora_down)|(?P<up>lora_B|lora_up))"
    r"(?:\.[A-Za-z0-9_\-]+)?\.(?P<leaf>weight|bias)$"
)
_LORA_PREFIXES = (
    "base_model.model.",
    "pipe.dit.",
    "model.diffusion_model.",
    "diffusion_model.",
    "transformer.",
    "dit.",
    "model.",
)
_KOHYA_PREFIXES = ("lora_unet_", "lora_transformer_")


def _split_lora_key(key: str) -> tuple[str, str] | None:
    """Split a LoRA key into (module path, role), role in down/up/alpha/diff/diff_b/up_bias."""
    m = _LORA_SUFFIX_RE.match(key)
    if m:
        if m.group("down"):
            return (m.group("base"), "down") if m.group("leaf") == "weight" else None
        return m.group("base"), ("up" if m.group("leaf") == "weight" else "diff_b")
    for suffix, role in ((".alpha", "alpha"), (".diff_b", "diff_b"), (".diff", "diff")):
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    return None


def _kohya_lookup() -> dict[str, str]:
    """Underscore spellings (kohya / musubi-tuner) of every known module, native and diffusers."""
    table: dict[str, str] = {}
    for native, diff in {**_TOP_MODULES, **_TOP_PARAMS}.items():
        table[native.replace(".", "_")] = native
        table[diff.replace(".", "_")] = diff
    return table


_KOHYA_TOP = _kohya_lookup()
_KOHYA_BLOCK = {
    **{k.replace(".", "_"): k for k in {**_BLOCK_MODULES, **_BLOCK_PARAMS}},
    **{v.replace(".", "_"): v for v in {**_BLOCK_MODULES, **_BLOCK_PARAMS}.values()},
}


def _lora_module_name(base: str) -> str | None:
    """Diffusers module path for the module part of a LoRA key, or None if it is not Wan's."""
    path = base
    changed = True
    while changed:  # prefixes can stack, e.g. base_model.model.transformer.
        stripped = _strip_prefix(path, _LORA_PREFIXES)
        changed, path = stripped != path, stripped
    for kp in _KOHYA_PREFIXES:
        if path.startswith(kp):
            rest = path[len(kp) :]
            m = re.match(r"^blocks_(\d+)_(.+)$", rest)
            dotted = (
                f"blocks.{m.group(1)}.{_KOHYA_BLOCK[m.group(2)]}"
                if m and m.group(2) in _KOHYA_BLOCK
                else _KOHYA_TOP.get(rest)
            )
            if dotted is None:
                return None
            path = dotted
            break
    native = native_module_to_diffusers(path)
    if native is not None:
        return native
    if diffusers_module_to_native(path) is not None:
        return path  # already a diffusers name
    return None


def _metadata_alpha(metadata: Mapping[str, str] | None) -> float | None:
    """lora_alpha stored by diffusers/peft in safetensors metadata, if any."""
    if not metadata or "lora_adapter_metadata" not in metadata:
        return None
    try:
        info = json.loads(metadata["lora_adapter_metadata"])
    except (TypeError, ValueError):
        return None
    for key, value in info.items():
        if key == "lora_alpha" or key.endswith(".lora_alpha"):
            return float(value)
    return None


def parse_lora(
    state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> dict[str, LoraDelta]:
    """Group a Wan LoRA (ComfyUI/community, diffusers/peft, DiffSynth, kohya) by diffusers module name."""
    deltas: dict[str, LoraDelta] = {}
    unplaced: list[str] = []
    for key, value in state_dict.items():
        if key.endswith(".dora_scale"):
            raise ValueError(
                f"The LoRA contains DoRA keys such as {key!r}; DoRA is not supported. Use a plain LoRA file."
            )
        split = _split_lora_key(key)
        module = None if split is None else _lora_module_name(split[0])
        if split is None or module is None:
            unplaced.append(key)
            continue
        role = split[1]
        entry = deltas.setdefault(module, LoraDelta(module=module))
        if role in entry.keys:
            raise ValueError(
                f"The LoRA has two keys for the same part ({role}) of module {module!r}: "
                f"{entry.keys[role]!r} and {key!r}. It probably merges two LoRAs under "
                "different prefixes; load them separately."
            )
        entry.keys[role] = key
        if role == "alpha":
            entry.alpha = float(value.float().reshape(-1)[0])
        else:
            setattr(entry, role, value)
    if unplaced:
        hint = (
            " The file also holds UniAnimate pose-encoder weights: split them off with "
            "unianimate_to_ours first."
            if any("dwpose_embedding" in k or "randomref_embedding_pose" in k for k in unplaced)
            else ""
        )
        raise ValueError(
            f"{len(unplaced)} key(s) of the LoRA do not name a Wan2.1 transformer layer in any "
            f"known LoRA format: {_examples(unplaced)}. Expected names such as "
            "'diffusion_model.blocks.0.self_attn.q.lora_down.weight' or "
            "'transformer.blocks.0.attn1.to_q.lora_A.weight'. Is this a LoRA for another model?" + hint
        )
    default_alpha = _metadata_alpha(metadata)
    for entry in deltas.values():
        _check_pair(entry)
        if entry.alpha is None and entry.down is not None:
            entry.alpha = default_alpha
    return deltas


def _check_pair(entry: LoraDelta) -> None:
    """Make sure a low-rank entry has both halves with a matching rank."""
    if (entry.down is None) != (entry.up is None):
        have, need = ("down (A)", "up (B)") if entry.down is not None else ("up (B)", "down (A)")
        raise ValueError(
            f"LoRA key {entry.first_key()!r} gives the {have} matrix for module "
            f"{entry.module!r} but the file has no {need} matrix for it; the file is incomplete."
        )
    if entry.down is not None and entry.up is not None and entry.up.shape[1] != entry.down.shape[0]:
        raise ValueError(
            f"LoRA keys {entry.keys['down']!r} and {entry.keys['up']!r} disagree on the rank: "
            f"down has shape {tuple(entry.down.shape)}, up has {tuple(entry.up.shape)}."
        )


def _low_rank_product(entry: LoraDelta, weight_shape: torch.Size) -> torch.Tensor:
    """B @ A in float32, reshaped to a Linear or Conv weight shape (checked by the caller)."""
    a = entry.down.to(torch.float32).flatten(1)
    b = entry.up.to(torch.float32).flatten(1)
    return (b @ a).reshape(weight_shape)


def _low_rank_shape(entry: LoraDelta) -> tuple[int, ...]:
    """The weight shape a low-rank pair produces (conv LoRAs carry 1x1 up kernels)."""
    up, down = entry.up, entry.down
    if up.dim() > 2 and any(s != 1 for s in up.shape[2:]):
        return (-1,)  # a non-1x1 up kernel cannot be merged as a product; reported as mismatch
    return (int(up.shape[0]), *(int(s) for s in down.shape[1:]))


def _resolve_target(
    name: str,
    modules: Mapping[str, torch.nn.Module],
    params: Mapping[str, torch.nn.Parameter],
) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
    """(weight, bias) of a module, or (param, None) of a bare parameter, or None."""
    if name in modules:
        mod = modules[name]
        return getattr(mod, "weight", None), getattr(mod, "bias", None)
    if name in params:
        return params[name], None
    return None


def _shape_error(key: str, module: str, lora_shape: Any, weight_shape: Any, what: str) -> ValueError:
    """A uniform message for a LoRA tensor that does not fit its target."""
    return ValueError(
        f"LoRA key {key!r} does not fit module {module!r}: the LoRA gives a {what} of shape "
        f"{tuple(lora_shape)} but the model's is {tuple(weight_shape)}. The LoRA was made for "
        "a different model size or variant (e.g. 14B vs 1.3B, I2V vs T2V)."
    )


def _plan_entry(entry: LoraDelta, name: str, target: tuple[torch.Tensor | None, torch.Tensor | None]) -> None:
    """Check every tensor of one LoRA entry against the model's weight and bias shapes."""
    weight, bias = target
    if entry.down is not None or entry.diff is not None:
        if weight is None:
            raise ValueError(f"LoRA key {entry.first_key()!r} targets module {name!r}, which has no weight.")
    if entry.down is not None:
        shape = _low_rank_shape(entry)
        if shape != tuple(weight.shape):
            raise _shape_error(entry.keys["down"], name, shape, weight.shape, "weight change (B @ A)")
    if entry.diff is not None and tuple(entry.diff.shape) != tuple(weight.shape):
        raise _shape_error(entry.keys["diff"], name, entry.diff.shape, weight.shape, "weight difference")
    if entry.diff_b is not None:
        if bias is None:
            raise ValueError(
                f"LoRA key {entry.keys['diff_b']!r} changes the bias of module {name!r}, which has no bias."
            )
        if tuple(entry.diff_b.shape) != tuple(bias.shape):
            raise _shape_error(entry.keys["diff_b"], name, entry.diff_b.shape, bias.shape, "bias difference")


def merge_lora(
    module: torch.nn.Module,
    lora_state_dict: Mapping[str, Any],
    strength: float = 1.0,
    prefix: str = "",
) -> list[str]:
    """Add strength * scale * (B @ A) (and full diffs) into the model's weights in place; returns merged names."""
    if lora_state_dict and all(isinstance(v, LoraDelta) for v in lora_state_dict.values()):
        deltas: Mapping[str, LoraDelta] = lora_state_dict
    else:
        deltas = parse_lora(lora_state_dict)
    if prefix and not prefix.endswith("."):
        prefix += "."
    modules = dict(module.named_modules())
    params = dict(module.named_parameters())
    plan: list[tuple[str, LoraDelta, tuple[torch.Tensor | None, torch.Tensor | None]]] = []
    # Check everything before touching any weight, so a bad LoRA leaves the model intact.
    for entry in deltas.values():
        name = prefix + entry.module
        target = _resolve_target(name, modules, params)
        if target is None:
            close = difflib.get_close_matches(name, list(modules) + list(params), n=3)
            hint = f" Closest names in the model: {_examples(close)}." if close else ""
            raise ValueError(
                f"LoRA key {entry.first_key()!r} targets module {name!r}, which the model does "
                f"not have ({type(module).__name__}).{hint} The LoRA is for another model, or "
                "prefix= is wrong."
            )
        _plan_entry(entry, name, target)
        plan.append((name, entry, target))
    if strength == 0:
        return []
    merged: list[str] = []
    with torch.no_grad():
        for name, entry, (weight, bias) in plan:
            if entry.down is not None or entry.diff is not None:
                # float32 accumulation: bf16 weights would lose most of a small delta.
                w = weight.detach().to(torch.float32)
                if entry.down is not None:
                    w = w + (strength * entry.scale) * _low_rank_product(entry, weight.shape).to(w.device)
                if entry.diff is not None:
                    w = w + strength * entry.diff.to(device=w.device, dtype=torch.float32)
                weight.copy_(w.to(weight.dtype))
            if entry.diff_b is not None:
                b = bias.detach().to(torch.float32)
                b = b + strength * entry.diff_b.to(device=b.device, dtype=torch.float32)
                bias.copy_(b.to(bias.dtype))
            merged.append(name)
    return merged


# --------------------------------------------------------------------------------------
# UniAnimate-DiT pose encoders
# --------------------------------------------------------------------------------------

_UNIANIMATE_RE = re.compile(
    r"^(?:.*\.)?(?P<seq>dwpose_embedding|randomref_embedding_pose)\.(?P<idx>\d+)\.(?P<leaf>weight|bias)$"
)
_UNIANIMATE_TARGET = {"dwpose_embedding": "pose_encoder", "randomref_embedding_pose": "ref_pose_encoder"}


def unianimate_to_ours(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a UniAnimate-DiT checkpoint into (our pose-encoder keys, everything else untouched)."""
    pose: dict[str, torch.Tensor] = {}
    other: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state_dict.items():
        m = _UNIANIMATE_RE.match(key)
        if not m:
            other[key] = value
            continue
        idx = int(m.group("idx"))
        if idx % 2:
            # Odd Sequential slots are SiLU layers, which have no parameters.
            raise ValueError(
                f"UniAnimate key {key!r} points at slot {idx} of {m.group('seq')}, which should "
                "be an activation without weights; the checkpoint layout is not the expected one."
            )
        new = f"{_UNIANIMATE_TARGET[m.group('seq')]}.convs.{idx // 2}.{m.group('leaf')}"
        if new in pose:
            raise ValueError(
                f"UniAnimate keys {origin[new]!r} and {key!r} both give {new!r}; "
                "the checkpoint holds the pose encoder twice. Keep one copy."
            )
        pose[new], origin[new] = value, key
    return pose, other
