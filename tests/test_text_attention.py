"""The compact cross-attention (text padding folded into one key) equals diffusers' processor."""

import numpy as np
import pytest
import torch

from iasa_core.model.presets import get_preset
from iasa_core.model.system import PoseWanSystem
from iasa_core.model.text_attention import CompactTextAttnProcessor, padding_run


def test_padding_run_counts_trailing_equal_rows_in_every_batch_item():
    text = torch.zeros(2, 10, 4)
    text[0, :3] = 1.0
    text[1, :5] = 2.0
    assert padding_run(text) == 5  # item 1 pads only from row 5
    assert padding_run(torch.zeros(1, 7, 4)) == 7
    assert padding_run(torch.arange(12.0).view(1, 3, 4)) == 1


def _outputs(system, x, t, cond):
    with torch.no_grad():
        return system.denoiser(x, t, cond, None)


@pytest.mark.parametrize("preset", ["tiny", "cpu-small"])
def test_compact_text_attention_equals_diffusers_processor(preset):
    system = PoseWanSystem.random(get_preset(preset), seed=5)
    blocks = system.denoiser.transformer.blocks
    assert all(isinstance(b.attn2.processor, CompactTextAttnProcessor) for b in blocks)
    torch.manual_seed(0)
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    cond = system.condition(image, 9)
    x = torch.randn(2, 16, 3, 4, 4)
    t = torch.tensor([900.0, 300.0])
    calls = []
    fallbacks = [b.attn2.processor.fallback for b in blocks]
    for b, fallback in zip(blocks, fallbacks, strict=True):
        b.attn2.processor.fallback = lambda *a, _f=fallback: calls.append(1) or _f(*a)
    compact = _outputs(system, x, t, cond)
    assert not calls, "the padding was not folded"
    for b, fallback in zip(blocks, fallbacks, strict=True):
        b.attn2.processor = fallback
    stock = _outputs(system, x, t, cond)
    assert cond.text.shape[1] == 512 and padding_run(cond.text) > 400
    assert (compact - stock).abs().max() < 1e-5 * max(1.0, stock.abs().max().item())


def test_autograd_and_unpadded_text_take_diffusers_path():
    system = PoseWanSystem.random(get_preset("tiny"), seed=6)
    calls = []
    for b in system.denoiser.transformer.blocks:
        fallback = b.attn2.processor.fallback
        b.attn2.processor.fallback = lambda *a, _f=fallback: calls.append(1) or _f(*a)
    image = np.zeros((32, 32, 3), np.uint8)
    cond = system.condition(image, 5, torch.randn(512, 16))  # a prompt with no padding at all
    x = torch.randn(1, 16, 2, 4, 4)
    _outputs(system, x, torch.tensor([500.0]), cond)
    assert len(calls) == 2
    calls.clear()
    x.requires_grad_()
    system.denoiser(x, torch.tensor([500.0]), system.condition(image, 5), None).sum().backward()
    assert len(calls) == 2 and torch.isfinite(x.grad).all()


def test_bf16_folds_the_padding_in_float32():
    from iasa_core.model.text_attention import _weighted_attention

    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    full_k = torch.cat([k[:, :, :3], k[:, :, 3:4].expand(-1, -1, 400, -1)], dim=2)
    full_v = torch.cat([v[:, :, :3], v[:, :, 3:4].expand(-1, -1, 400, -1)], dim=2)
    ref = torch.nn.functional.scaled_dot_product_attention(q.double(), full_k.double(), full_v.double())
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        out = _weighted_attention(q.to(dtype), k[:, :, :4].to(dtype), v[:, :, :4].to(dtype),
                                  float(np.log(400)))
        assert out.dtype == dtype
        assert (out.double() - ref).abs().max() < tol
