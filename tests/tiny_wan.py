"""A tiny Wan2.1 T2V diffusion model in Wan-native keys, random weights, from ComfyUI's own WanModel class.

Needs ComfyUI's python package (a checkout on COMFYUI_PATH and its requirements). As a script it writes the
state dict for ComfyUI's loader (UNETLoader / Load Diffusion Model):

    COMFYUI_PATH=/path/to/ComfyUI python tests/tiny_wan.py out.safetensors

ComfyUI reads the config from the keys: dim 256 -> 2 heads of 128 (Wan's head size), 2 blocks, T2V.
"""

from __future__ import annotations

import os
import sys


def import_comfy_on_cpu() -> None:
    """Make ComfyUI's package importable (COMFYUI_PATH) and pick its CPU device before model_management loads."""
    path = os.environ.get("COMFYUI_PATH")
    if path and path not in sys.path:
        sys.path.append(path)  # appended: the repository's own folders keep precedence
    import comfy.cli_args

    if "comfy.model_management" not in sys.modules:
        comfy.cli_args.args.cpu = True


def tiny_wan_state_dict(seed: int = 0, scale: float = 0.05) -> dict:
    """{key: fp32 tensor} of a 2-block Wan2.1 T2V model (dim 256, in/out 16 channels, text 4096)."""
    import torch

    import_comfy_on_cpu()
    import comfy.ops
    from comfy.ldm.wan.model import WanModel

    model = WanModel(model_type="t2v", dim=256, ffn_dim=256, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
                     operations=comfy.ops.disable_weight_init)
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * scale for k, v in model.state_dict().items()}


if __name__ == "__main__":
    from safetensors.torch import save_file

    save_file(tiny_wan_state_dict(), sys.argv[1])
