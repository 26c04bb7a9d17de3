"""Tiny random-weight stand-ins for native Wan files, from ComfyUI's own classes, in the keys its loaders read.

Needs ComfyUI's python package (a checkout on COMFYUI_PATH and its requirements). As a script it writes the
files for ComfyUI's loaders (UNETLoader / Load Diffusion Model, LoraLoaderModelOnly, Load VAE):

    COMFYUI_PATH=/path/to/ComfyUI python tests/tiny_wan.py out.safetensors                 # Wan2.1 T2V
    COMFYUI_PATH=/path/to/ComfyUI python tests/tiny_wan.py out.safetensors --kind animate  # + --lora L --vae V

ComfyUI reads the config from the keys: dim 256 -> 2 heads of 128 (Wan's head size), 2 or 5 blocks; the kind sets
the input channels and extra modules (Animate: 36 in, face adapter, pose embedding; Fun Control: 48 in, CLIP
image embedding). ComfyUI builds every Wan2.1 VAE at full size (dim 96), so the VAE is full size, random.
"""

from __future__ import annotations

import argparse
import os
import sys

# kind -> (model class, its model_type, input channels, blocks). Animate has a face adapter every 5th block,
# and ComfyUI recognises Animate by the first one's keys: 5 blocks at least.
KINDS = {"t2v": ("WanModel", "t2v", 16, 2), "animate": ("AnimateWanModel", "animate", 36, 5),
         "fun_control": ("WanModel", "i2v", 48, 5)}  # 5 like Animate: both workflows share one LoRA file
LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")


def import_comfy_on_cpu() -> None:
    """Make ComfyUI's package importable (COMFYUI_PATH) and pick its CPU device before model_management loads."""
    path = os.environ.get("COMFYUI_PATH")
    if path and path not in sys.path:
        sys.path.append(path)  # appended: the repository's own folders keep precedence
    import comfy.cli_args

    if "comfy.model_management" not in sys.modules:
        comfy.cli_args.args.cpu = True


def tiny_wan_state_dict(seed: int = 0, scale: float = 0.05, kind: str = "t2v") -> dict:
    """{key: fp32 tensor} of a small Wan diffusion model (dim 256, out 16 channels, text 4096) of ``kind``."""
    import torch

    import_comfy_on_cpu()
    import comfy.ops

    class_name, model_type, in_dim, blocks = KINDS[kind]
    if class_name == "AnimateWanModel":
        from comfy.ldm.wan.model_animate import AnimateWanModel as cls
    else:
        from comfy.ldm.wan.model import WanModel as cls
    model = cls(model_type=model_type, dim=256, ffn_dim=256, num_heads=2, num_layers=blocks, in_dim=in_dim, out_dim=16,
                operations=comfy.ops.disable_weight_init)
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * scale for k, v in model.state_dict().items()}


def tiny_lora_state_dict(model: dict, rank: int = 4, seed: int = 1, scale: float = 0.02) -> dict:
    """A LoRA in the lightx2v files' key format (diffusion_model.<layer>.lora_down/lora_up) for ``model``'s blocks."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, weight in model.items():
        layer = key[: -len(".weight")]
        if key.endswith(".weight") and layer.startswith("blocks.") and layer.split(".", 2)[2] in LORA_TARGETS:
            out[f"diffusion_model.{layer}.lora_down.weight"] = torch.randn(rank, weight.shape[1], generator=g) * scale
            out[f"diffusion_model.{layer}.lora_up.weight"] = torch.randn(weight.shape[0], rank, generator=g) * scale
            out[f"diffusion_model.{layer}.alpha"] = torch.tensor(float(rank))
    return out


def random_wan_vae_state_dict(seed: int = 2) -> dict:
    """{key: fp16 tensor} of a Wan2.1 VAE (ComfyUI's WanVAE at its fixed size) with random, scale-keeping weights."""
    import torch

    import_comfy_on_cpu()
    from comfy.ldm.wan.vae import WanVAE

    vae = WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], dropout=0.0)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in vae.state_dict().items():
        if key.endswith("gamma"):
            t = torch.ones(value.shape)
        elif value.ndim <= 1:
            t = torch.zeros(value.shape)
        else:  # fan-in scaling keeps activations near unit size through the convolutions
            t = torch.randn(value.shape, generator=g) / (value[0].numel() ** 0.5)
        out[key] = t.to(torch.float16)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the tiny model (and optionally its LoRA and a random Wan VAE) as safetensors."""
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the diffusion model file to write")
    parser.add_argument("--kind", choices=sorted(KINDS), default="t2v")
    parser.add_argument("--lora", help="also write a LoRA for it here")
    parser.add_argument("--vae", help="also write a random Wan2.1 VAE here")
    args = parser.parse_args(argv)
    model = tiny_wan_state_dict(kind=args.kind)
    save_file(model, args.out)
    if args.lora:
        save_file(tiny_lora_state_dict(model), args.lora)
    if args.vae:
        save_file(random_wan_vae_state_dict(), args.vae)
    return 0


if __name__ == "__main__":
    sys.exit(main())
