"""LoRA adapters on the Wan blocks: inject, list trainable weights, merge, and save in the community Wan format."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from iasa_core.model.weights import diffusers_module_to_native

# Short target names (as in UniAnimate/IASA: q,k,v,o,ffn.0,ffn.2) -> diffusers module paths inside a block.
TARGETS = {
    "q": ("attn1.to_q", "attn2.to_q"),
    "k": ("attn1.to_k", "attn2.to_k"),
    "v": ("attn1.to_v", "attn2.to_v"),
    "o": ("attn1.to_out.0", "attn2.to_out.0"),
    "ffn.0": ("ffn.net.0.proj",),
    "ffn.2": ("ffn.net.2",),
}


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: W x + (alpha/rank) B A x."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha)
        self.lora_down = nn.Linear(base.in_features, rank, bias=False, device=base.weight.device)
        self.lora_up = nn.Linear(rank, base.out_features, bias=False, device=base.weight.device)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)  # the adapted model starts equal to the base model

    @property
    def scale(self) -> float:
        """alpha / rank."""
        return self.alpha / self.rank

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (diffusers reads ``.weight`` of some projections for their dtype)."""
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Base output plus the scaled low-rank update."""
        return self.base(x) + self.lora_up(self.lora_down(x.to(self.lora_down.weight.dtype))).to(x.dtype) * self.scale

    def merged(self) -> nn.Linear:
        """A plain linear layer with the update folded in."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            delta = (self.lora_up.weight.float() @ self.lora_down.weight.float()) * self.scale
            out.weight.copy_((self.base.weight.float() + delta).to(out.weight.dtype))
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _set_child(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def add_lora(transformer: nn.Module, rank: int, alpha: float | None = None,
             targets: list[str] | tuple[str, ...] = tuple(TARGETS)) -> list[str]:
    """Wrap the target linears of every Wan block in LoRA adapters; returns the wrapped module paths."""
    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive; got {rank}")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; choose from {list(TARGETS)}")
    alpha = float(rank if alpha is None else alpha)
    wrapped = []
    for i, block in enumerate(transformer.blocks):
        for target in targets:
            for sub in TARGETS[target]:
                layer = block.get_submodule(sub)
                if isinstance(layer, LoRALinear):
                    continue
                if not isinstance(layer, nn.Linear):
                    raise TypeError(f"blocks.{i}.{sub} is {type(layer).__name__}, not a Linear layer")
                _set_child(block, sub, LoRALinear(layer, rank, alpha))
                wrapped.append(f"blocks.{i}.{sub}")
    return wrapped


def lora_layers(module: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRA layer under ``module`` by its path."""
    return {name: m for name, m in module.named_modules() if isinstance(m, LoRALinear)}


def merge_lora_layers(module: nn.Module) -> int:
    """Replace every LoRA layer by its merged linear layer, in place; returns how many were merged."""
    layers = lora_layers(module)
    for name, layer in layers.items():
        _set_child(module, name, layer.merged())
    return len(layers)


def lora_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters in the community Wan LoRA format (``diffusion_model.blocks.N.self_attn.q.lora_down.weight``).

    ComfyUI's LoRA loader and our own ``load_model(loras=...)`` read this format.
    """
    out: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(transformer).items():
        native = diffusers_module_to_native(name)
        if native is None:
            raise ValueError(f"no native Wan name for {name}; this is a bug, please report it")
        prefix = f"diffusion_model.{native}"
        out[f"{prefix}.lora_down.weight"] = layer.lora_down.weight.detach().float().cpu().contiguous()
        out[f"{prefix}.lora_up.weight"] = layer.lora_up.weight.detach().float().cpu().contiguous()
        out[f"{prefix}.alpha"] = torch.tensor(layer.alpha)
    return out


def save_lora(transformer: nn.Module, path: str | os.PathLike) -> Path:
    """Write the adapters as one safetensors file (atomic)."""
    path = Path(path)
    state = lora_state_dict(transformer)
    if not state:
        raise ValueError("the model has no LoRA layers to save")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(state, str(tmp), metadata={"format": "wan-lora", "source": "iasa training"})
    os.replace(tmp, path)
    return path
