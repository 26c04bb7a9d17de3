"""bfloat16 on CPUs that have it (AMX / AVX512-BF16): detection, the default dtype, the VAE's fast layers and a
whole generation against float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iasa_core import node_support
from iasa_core.node_support import cpu_flags, fast_bf16, pick_dtype


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n\nflags\t: other\n")
    assert cpu_flags(str(info)) == {"fpu", "sse", "avx512f", "amx_bf16", "amx_tile"}
    assert cpu_flags(str(tmp_path / "missing")) == set()


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_is_bf16_only_where_the_cpu_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(node_support, "cpu_has_native_bf16", lambda: native)
    assert pick_dtype("auto", "cpu") == expected and fast_bf16("cpu") is native
    assert pick_dtype("float32", "cpu") == torch.float32 and pick_dtype("bfloat16", "cpu") == torch.bfloat16
    assert pick_dtype("auto", "cuda") == torch.bfloat16


def test_training_precision_auto_follows_the_cpu(monkeypatch):
    from training.runtime import resolve_precision

    monkeypatch.setattr(node_support, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(node_support, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.warns(UserWarning, match="without native bf16.*set run.precision \\(or --precision\\) to auto or fp32"):
        assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_vae_fast_layers_run_in_bf16_close_to_fp32():
    from diffusers import AutoencoderKLWan

    from iasa_core.model.vae_codec import decode_latents

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1).eval()
    z = torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        ref = vae.decode(z).sample  # diffusers' own float32 loop, unpatched layers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = decode_latents(vae, z)
    assert fast.dtype == torch.bfloat16 and fast.shape == ref.shape
    err = (fast.float() - ref).abs()
    assert err.max() < 0.1 and err.mean() < 0.01


def test_whole_generation_in_bf16_matches_fp32():
    from iasa_core.model.loading import load_model
    from iasa_core.pipeline import generate_video
    from iasa_core.synthetic import make_sample

    clip = make_sample(424242, 0, 0.7, engine="synthetic")
    frames = {}
    for dtype in (torch.float32, torch.bfloat16):
        system = load_model("embedded").to("cpu", dtype)
        assert isinstance(system.vae_autocast(), torch.autocast) == (dtype == torch.bfloat16)
        frames[dtype] = generate_video(system, clip.frames[0], clip.poses).frames.astype(np.float64)
    assert frames[torch.float32].shape == frames[torch.bfloat16].shape == (len(clip.poses), 128, 128, 3)
    diff = frames[torch.float32] - frames[torch.bfloat16]
    psnr = 10 * np.log10(255.0 ** 2 / max((diff ** 2).mean(), 1e-10))
    assert psnr > 35, f"bf16 and fp32 generations differ: {psnr:.1f} dB"
    assert np.abs(diff).mean() < 2.0
