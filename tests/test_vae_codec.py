"""Chunked Wan VAE encode/decode equals diffusers' frame-by-frame loop; float16 storage round-trips."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from iasa_core.model.presets import get_preset
from iasa_core.model.vae_codec import chunk_latents, decode_latents, encode_moments, fast_cpu_layers

# Wan2.2's residual blocks (average-down / duplicate-up shortcuts), on the Wan2.1 8x grid without patching
RESIDUAL = dict(get_preset("cpu-small").vae, dim_mult=[1, 2, 4, 4], is_residual=True)
CONFIGS = [get_preset("tiny").vae, get_preset("cpu-small").vae, RESIDUAL]


@pytest.fixture(params=range(len(CONFIGS)), ids=["tiny", "cpu-small", "residual"])
def vae(request):
    torch.manual_seed(request.param)
    return AutoencoderKLWan(**CONFIGS[request.param]).eval()


@pytest.mark.parametrize("chunk", [None, 1, 2, 3])
def test_chunked_encode_equals_diffusers(vae, chunk):
    torch.manual_seed(1)
    video = torch.rand(1, 3, 13, 32, 48) * 2 - 1
    with torch.no_grad():
        ref = vae.encode(video).latent_dist.parameters
        ours = encode_moments(vae, video, chunk)
    assert ours.shape == ref.shape == (1, 32, 4, 4, 6)
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [None, 1, 2, 3])
def test_chunked_decode_equals_diffusers(vae, chunk):
    torch.manual_seed(2)
    z = torch.randn(1, 16, 5, 4, 6)
    with torch.no_grad():
        ref = vae.decode(z).sample
        ours = decode_latents(vae, z, chunk)
    assert ours.shape == ref.shape == (1, 3, 17, 32, 48)
    assert (ours - ref).abs().max() < 1e-5


def test_unclamped_decode_has_gradients_everywhere(vae):
    z = torch.randn(1, 16, 2, 2, 2, requires_grad=True)
    out = decode_latents(vae, z * 50, clamp=False)
    clamped = decode_latents(vae, z.detach() * 50)
    assert torch.equal(clamped, out.detach().clamp(-1, 1))
    out.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_fast_layers_match_and_are_restored(vae):
    x = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = vae.encode(x).latent_dist.parameters
        with fast_cpu_layers(vae):
            patched = [m for m in vae.modules() if "forward" in m.__dict__]
            fast = vae.encode(x).latent_dist.parameters
    assert patched, "no layer was swapped"
    assert not [m for m in vae.modules() if "forward" in m.__dict__]
    assert (fast - ref).abs().max() < 1e-5


def test_chunk_size_follows_frame_size(vae):
    assert chunk_latents(vae, 128, 128) > chunk_latents(vae, 1024, 1024) >= 1


def test_bad_frame_count_is_explained(vae):
    with pytest.raises(ValueError, match="4n\\+1"):
        encode_moments(vae, torch.zeros(1, 3, 6, 32, 32))


def test_float16_storage_round_trip(tmp_path):
    from iasa_core.model.checkpoint import load_student, read_metadata, save_student
    from iasa_core.model.system import PoseWanSystem

    system = PoseWanSystem.random(get_preset("tiny"), seed=3)
    full = save_student(system, tmp_path / "full.safetensors")
    half = save_student(system, tmp_path / "half.safetensors", storage_dtype=torch.float16)
    assert read_metadata(half)["storage_dtype"] == "float16"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_student(half)
    assert all(p.dtype == torch.float32 for p in loaded.denoiser.parameters())
    for (k, a), (_, b) in zip(system.denoiser.state_dict().items(), loaded.denoiser.state_dict().items(),
                              strict=True):
        if a.is_floating_point():
            assert torch.equal(a.half().float(), b), k
    assert np.isfinite(loaded.prompt_embeds.numpy()).all()


def test_segmented_decode_reprimes_each_segment_and_ignores_how_latents_arrive(vae):
    from iasa_core.model.vae_codec import StreamDecoder

    torch.manual_seed(3)
    z = torch.randn(1, 16, 12, 4, 6)
    with torch.no_grad():
        whole = decode_latents(vae, z, 2, segment=4)
        assert whole.shape == (1, 3, 45, 32, 48)
        plain = decode_latents(vae, z, 2)
        # the first segment (first latent + 4) is the plain stream's; the next starts from a fresh stream fed
        # the first latent and the 3 latents before it, whose pixels are dropped
        assert torch.equal(whole[:, :, :17], plain[:, :, :17])
        fresh = decode_latents(vae, torch.cat([z[:, :, :1], z[:, :, 2:9]], dim=2), 2)
        assert (whole[:, :, 17:33] - fresh[:, :, 1 + 4 * 3:]).abs().max() < 1e-5
        assert (whole[:, :, 17:] - plain[:, :, 17:]).abs().max() > 1e-3
        d = StreamDecoder(vae, 2, segment=4)
        outs = []
        for a, b in [(0, 1), (1, 6), (6, 7), (7, 12)]:
            outs += d.push(z[:, :, a:b])
        pieces = torch.cat(outs + d.finish(), dim=2)
    assert torch.equal(pieces, whole)
    with pytest.raises(ValueError, match="segment"):
        StreamDecoder(vae, segment=0)


def test_fused_blocks_and_upsamplers_serve_inference_and_leave_autograd_alone(vae, monkeypatch):
    from iasa_core.model import vae_codec

    calls = []
    fused = vae_codec._norm_silu_conv

    def counting(*args):
        calls.append(1)
        return fused(*args)

    monkeypatch.setattr(vae_codec, "_norm_silu_conv", counting)
    upsampled = []
    channels_last = vae_codec._upsample

    def upsampling(self, x, *args, **kwargs):
        out = channels_last(self, x, *args, **kwargs)
        upsampled.append(out.is_contiguous(memory_format=torch.channels_last_3d))
        return out

    monkeypatch.setattr(vae_codec, "_upsample", upsampling)
    torch.manual_seed(4)
    z = torch.randn(1, 16, 4, 4, 6)
    with torch.no_grad():
        ref = vae.decode(z).sample
        ours = decode_latents(vae, z, 1)
    assert len(calls) == 2 * sum(1 for m in vae.decoder.modules() if type(m).__name__ == "WanResidualBlock") * 4
    assert (ours - ref).abs().max() < 1e-5
    ups = sum(1 for m in vae.decoder.modules() if getattr(m, "mode", "").startswith("upsample"))
    # 4 chunks of one latent frame; after the first (a lone frame, whose layout is moot) no layout copy is left
    assert len(upsampled) == 4 * ups and all(upsampled[ups:])
    calls.clear()
    decode_latents(vae, z.requires_grad_(), 1, clamp=False).sum().backward()  # in-place activations would break this
    assert not calls and torch.isfinite(z.grad).all()
