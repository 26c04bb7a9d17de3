"""3-D convolutions through oneDNN on CPU float32: the same values and gradients as F.conv3d, no slow kernel."""

import pytest
import torch
from diffusers import AutoencoderKLWan
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from iasa_core.model.cpu_conv import conv3d, conv3d_module, use_onednn
from iasa_core.model.pose_encoder import PoseVideoEncoder
from iasa_core.model.presets import get_preset
from iasa_core.model.vae_codec import decode_latents, encode_moments

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")

# (input shape, weight shape, stride, padding, dilation, groups): the VAE's and pose encoder's kinds of layer
CASES = [
    ((1, 8, 6, 20, 22), (8, 8, 3, 3, 3), 1, (0, 1, 1), 1, 1),
    ((2, 3, 7, 16, 16), (16, 3, 3, 3, 3), (1, 2, 2), 1, 1, 1),
    ((1, 16, 9, 12, 10), (16, 16, 3, 3, 3), 2, 1, 1, 1),
    ((1, 16, 5, 8, 8), (32, 16, 1, 2, 2), (1, 2, 2), 0, 1, 1),
    ((1, 8, 7, 10, 10), (8, 4, 3, 3, 3), 1, 2, 2, 2),
]


@needs_onednn
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_matches_conv3d_with_gradients(case):
    shape, wshape, stride, padding, dilation, groups = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, requires_grad=True)
    w = torch.randn(wshape, generator=g, requires_grad=True)
    b = torch.randn(wshape[0], generator=g, requires_grad=True)
    ours = conv3d(x, w, b, stride, padding, dilation, groups)
    ref = F.conv3d(x, w, b, stride, padding, dilation, groups)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(ours.square().sum(), (x, w, b))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, w, b))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-2)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_other_dtypes_autocast_and_disabled_onednn_take_pytorchs_own_path():
    x, w = torch.randn(1, 4, 3, 6, 6), torch.randn(4, 4, 3, 3, 3)
    assert use_onednn(x, w) == torch.backends.mkldnn.is_available()
    assert not use_onednn(x.double(), w.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not use_onednn(x, w)
    with torch.backends.mkldnn.flags(enabled=False):
        assert not use_onednn(x, w)
        assert torch.equal(conv3d(x, w, padding=1), F.conv3d(x, w, padding=1))
    xd, wd = x.double(), w.double()
    assert torch.equal(conv3d(xd, wd, None, 1, 1), F.conv3d(xd, wd, None, 1, 1))


def test_module_form_keeps_other_padding_modes():
    conv = torch.nn.Conv3d(3, 4, 3, padding=1, padding_mode="replicate")
    x = torch.randn(1, 3, 4, 8, 8)
    assert torch.equal(conv3d_module(conv, x), conv(x))
    same = torch.nn.Conv3d(3, 4, 3, padding="same")
    assert torch.equal(conv3d_module(same, x), same(x))


def _slow_kernel_calls(fn) -> list[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [e.key for e in prof.key_averages() if "slow_conv3d" in e.key]


@needs_onednn
def test_vae_and_pose_encoder_never_fall_to_the_slow_kernel():
    # These shapes sit under PyTorch's size rule (batch x channels x frames x height <= 20480): before, every
    # one of their 3-D convolutions ran PyTorch's single-threaded reference kernel.
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**get_preset("cpu-small").vae).eval()
    encoder = PoseVideoEncoder(out_dim=32, hidden=16).eval()
    assert _slow_kernel_calls(lambda: F.conv3d(torch.randn(1, 8, 6, 40, 40), torch.randn(8, 8, 3, 3, 3))), \
        "PyTorch no longer picks its slow kernel here: this test must find another shape"
    with torch.no_grad():
        assert _slow_kernel_calls(lambda: decode_latents(vae, torch.randn(1, 16, 6, 5, 5), segment=4)) == []
        assert _slow_kernel_calls(lambda: encode_moments(vae, torch.rand(1, 3, 5, 40, 40) * 2 - 1)) == []
        assert _slow_kernel_calls(lambda: encoder(torch.rand(1, 3, 5, 32, 32) * 255)) == []
