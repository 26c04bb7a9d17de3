"""IASA Patch Model on ComfyUI's REAL native Wan: its WanModel class, its loader, its sampler, on CPU.

A tiny Wan2.1 T2V checkpoint in Wan-native keys (random weights, 2 heads of 128, 2 blocks) is loaded
through ``comfy.sd.load_diffusion_model_state_dict`` and sampled with ``comfy.sample.sample`` (cond and
uncond batched, as KSampler does). Skipped unless ComfyUI's python package is importable: put a ComfyUI
checkout on COMFYUI_PATH and run with an interpreter that has its requirements, e.g.

    COMFYUI_PATH=/path/to/ComfyUI /path/to/venv/bin/python -m pytest -q tests/test_native_wan_comfy.py
"""

from __future__ import annotations

import pytest
import torch

try:
    from tiny_wan import import_comfy_on_cpu, tiny_wan_state_dict

    import_comfy_on_cpu()
    import comfy.context_windows
    import comfy.sample
    import comfy.sd
except ImportError as exc:  # CI has no ComfyUI
    pytest.skip(f"ComfyUI's python package is not importable ({exc}); set COMFYUI_PATH", allow_module_level=True)

from test_native_patch import MaskOverride, Recorder, additive, poses  # noqa: E402

from iasa_core.sampling.windows import Window  # noqa: E402
from iasa_core.sparse.native_patch import LAYOUT_KEY, OVERRIDE_KEY, PatchOptions, install  # noqa: E402
from iasa_core.sparse.plan import PlanConfig, build_plan  # noqa: E402

H, W = 64, 96  # pixels: latent 8 x 12, tokens 4 x 6 per latent frame
TEXT_TOKENS = 8
STEPS = 2


@pytest.fixture(scope="module")
def wan():
    """A ModelPatcher from ComfyUI's own loader for a tiny Wan2.1 T2V state dict (Wan-native keys)."""
    sd = tiny_wan_state_dict()
    patcher = comfy.sd.load_diffusion_model_state_dict(sd, model_options={"dtype": torch.float32})
    assert type(patcher.model.diffusion_model).__name__ == "WanModel"
    return patcher


def sample(model, latent_frames=3):
    lat = torch.zeros(1, 16, latent_frames, H // 8, W // 8)
    g = torch.Generator().manual_seed(7)
    pos = [[torch.randn(1, TEXT_TOKENS, 4096, generator=g), {}]]
    neg = [[torch.randn(1, TEXT_TOKENS, 4096, generator=g), {}]]
    noise = comfy.sample.prepare_noise(lat, 0)
    with torch.no_grad():
        return comfy.sample.sample(model, noise, STEPS, 3.0, "euler", "simple", pos, neg, lat, disable_pbar=True,
                                   seed=0)


def patch_of(model):
    return model.model_options["transformer_options"][OVERRIDE_KEY]


def test_all_dense_plan_equals_the_unpatched_model(wan):
    want = sample(wan)
    clone = wan.clone()
    install(clone, poses(h=H, w=W), PatchOptions(plan=PlanConfig(top_k=8, local=False, causal=False, block_size=16)))
    got = sample(clone)
    assert patch_of(clone).sparse_calls == STEPS * 2  # cond+uncond in one batch per step, 2 blocks
    assert (got - want).abs().max().item() <= 1e-5


def test_iasa_equals_comfyuis_attention_with_the_plans_token_mask(wan):
    seq = poses(h=H, w=W)
    clone = wan.clone()
    install(clone, seq, PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))
    plan = build_plan(seq.keypoints, (H, W), top_k=1, block_size=16)
    reference = wan.clone()
    reference.model_options["transformer_options"][OVERRIDE_KEY] = MaskOverride(plan.token_mask())
    got, want, dense = sample(clone), sample(reference), sample(wan)
    assert patch_of(clone).sparse_calls == STEPS * 2
    assert (got - want).abs().max().item() <= 1e-5
    assert (got - dense).abs().max().item() > 1e-4  # the pattern changed the result


def test_self_cross_split_chaining_and_the_input_model_untouched(wan):
    before = sample(wan)
    chained = wan.clone()
    chained.model_options["transformer_options"][OVERRIDE_KEY] = Recorder()
    patched = chained.clone()
    install(patched, poses(h=H, w=W), PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))
    sample(patched)
    recorder = patch_of(patched).previous
    tokens = 3 * (H // 16) * (W // 16)
    # the earlier override got exactly the cross-attentions (text keys), IASA every self-attention
    assert recorder.lengths == [(tokens, TEXT_TOKENS)] * (STEPS * 2)
    assert patch_of(patched).sparse_calls == STEPS * 2
    # neither the input MODEL nor the model it came from changed
    assert OVERRIDE_KEY not in wan.model_options.get("transformer_options", {})
    assert not any("iasa_sparse_attention" in d for d in wan.wrappers.values())
    assert LAYOUT_KEY not in patched.model_options["transformer_options"]
    assert torch.equal(sample(wan), before)


def test_context_windows_get_a_plan_per_window(wan):
    seq = poses(frames=21, h=H, w=W)  # 6 latent frames, windows of 3 with overlap 1
    clone = wan.clone()
    clone.model_options["context_handler"] = comfy.context_windows.IndexListContextHandler(
        context_schedule=comfy.context_windows.get_matching_context_schedule("standard_static"),
        fuse_method=comfy.context_windows.get_matching_fuse_method("pyramid"),
        context_length=3, context_overlap=1, dim=2)
    comfy.context_windows.create_prepare_sampling_wrapper(clone)
    reference = clone.clone()
    install(clone, seq, PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))

    def window_mask(func, q, k, v, *args, **kwargs):
        window = kwargs["transformer_options"]["context_window"].index_list
        if q.shape[1] == k.shape[1]:
            start = int(window[0])
            plan = build_plan(seq.keypoints[Window(start, start + len(window)).video_frames], (H, W), top_k=1,
                              block_size=16)
            kwargs["mask"] = additive(plan.token_mask())
        return func(q, k, v, *args, **kwargs)

    reference.model_options["transformer_options"][OVERRIDE_KEY] = window_mask
    got, want = sample(clone, latent_frames=6), sample(reference, latent_frames=6)
    firsts = sorted({key[3] for key in patch_of(clone)._plans})
    assert len(firsts) >= 2 and firsts[0] == 0
    assert (got - want).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------- extra tokens, on ComfyUI's own classes


def randomized(model, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.data = torch.randn(p.shape, generator=g) * scale
    return model.eval()


def forward_pair(model, seq, prefix, suffix, args, kwargs):
    """(IASA-patched output, ComfyUI attention with the padded plan's mask) of one direct forward."""
    from iasa_core.sparse.native_patch import WRAPPER_KEY, WRAPPER_TYPE, IASAAttentionPatch
    from iasa_core.sparse.padded import PaddedPlan

    patch = IASAAttentionPatch(seq, PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))
    patched = {OVERRIDE_KEY: patch, "wrappers": {WRAPPER_TYPE: {WRAPPER_KEY: [patch.forward_wrapper]}}}
    plan = build_plan(seq.keypoints, (H, W), top_k=1, block_size=16)
    reference = {OVERRIDE_KEY: MaskOverride(PaddedPlan(plan, prefix, suffix).token_mask())}
    with torch.no_grad():
        got = model(*args, transformer_options=patched, **kwargs)
        want = model(*args, transformer_options=reference, **kwargs)
        dense = model(*args, transformer_options={}, **kwargs)
    assert patch.sparse_calls == len(model.blocks) and not patch._warned
    return got, want, dense


def test_reference_latent_before_and_time_concat_after_stay_dense_in_wanmodel():
    from comfy.ldm.wan.model import WanModel

    model = randomized(WanModel(model_type="t2v", dim=256, ffn_dim=256, num_heads=2, num_layers=2, in_dim=16,
                                out_dim=16, in_dim_ref_conv=16, operations=comfy.ops.disable_weight_init))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, H // 8, W // 8, generator=g)
    ctx = torch.randn(2, TEXT_TOKENS, 4096, generator=g)
    kwargs = {"time_dim_concat": torch.randn(2, 16, 1, H // 8, W // 8, generator=g),
              "reference_latent": torch.randn(2, 16, H // 8, W // 8, generator=g)}
    n = (H // 16) * (W // 16)
    got, want, dense = forward_pair(model, poses(h=H, w=W), n, n, (x, torch.full((2,), 500.0), ctx), kwargs)
    assert (got - want).abs().max().item() <= 1e-5
    assert (got - dense).abs().max().item() > 1e-4


def test_animate_reference_frame_stays_dense_in_animatewanmodel():
    from comfy.ldm.wan.model_animate import AnimateWanModel

    model = randomized(AnimateWanModel(dim=256, ffn_dim=256, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
                                       operations=comfy.ops.disable_weight_init))
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 16, 4, H // 8, W // 8, generator=g)  # WanAnimateToVideo: 1 reference + 3 video latents
    ctx = torch.randn(1, TEXT_TOKENS, 4096, generator=g)
    clip = torch.randn(1, 257, 1280, generator=g)
    n = (H // 16) * (W // 16)
    got, want, dense = forward_pair(model, poses(h=H, w=W), n, 0, (x, torch.full((1,), 500.0), ctx),
                                    {"clip_fea": clip})
    assert (got - want).abs().max().item() <= 1e-5
    assert (got - dense).abs().max().item() > 1e-4
