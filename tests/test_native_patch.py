"""IASA's attention override for ComfyUI native Wan, run without ComfyUI.

A small pure-torch stand-in reproduces the calling conventions that matter (ComfyUI's ``wrap_attn``
dispatch, the DIFFUSION_MODEL wrapper chain, ModelPatcher.clone's deep copy of model_options, Wan's token
order and its self/cross-attention calls); tests/test_native_wan_comfy.py repeats the key checks on
ComfyUI's real WanModel where ComfyUI is importable.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sampling.windows import Window
from iasa_core.sparse.native_layout import TokenLayout, layout_from_forward
from iasa_core.sparse.native_patch import (
    LAYOUT_KEY,
    OVERRIDE_KEY,
    IASAAttentionPatch,
    PatchOptions,
    install,
)
from iasa_core.sparse.padded import PaddedPlan
from iasa_core.sparse.plan import PlanConfig, build_plan

H, W, FRAMES = 64, 96, 9  # video pixels and frames -> 3 latent frames of 4 x 6 patches
HEADS, DIM, TEXT = 2, 16, 7


# ---------------------------------------------------------------------- a stand-in for ComfyUI's machinery


def core_attention(q, k, v, heads, mask=None, skip_reshape=False, skip_output_reshape=False, **kwargs):
    """What ComfyUI's attention_pytorch computes, written plainly (the `func` an override receives)."""
    if skip_reshape:
        b, _, _, d = q.shape
    else:
        b, _, width = q.shape
        d = width // heads
        q, k, v = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    if mask is not None and mask.ndim == 2:
        mask = mask[None, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out if skip_output_reshape else out.transpose(1, 2).reshape(b, -1, heads * d)


def dispatch(*args, **kwargs):
    """ComfyUI's wrap_attn: the model's override (if any) gets the call, with the plain function as `func`."""
    options = kwargs.get("transformer_options")
    if options and OVERRIDE_KEY in options and "_inside_attn_wrapper" not in kwargs:
        return options[OVERRIDE_KEY](core_attention, *args, _inside_attn_wrapper=True, **kwargs)
    kwargs.pop("_inside_attn_wrapper", None)
    return core_attention(*args, **kwargs)


class Executor:
    """comfy.patcher_extension.WrapperExecutor in miniature."""

    def __init__(self, original, class_obj, wrappers, idx=0):
        self.original, self.class_obj, self.wrappers, self.idx = original, class_obj, wrappers, idx

    def __call__(self, *args, **kwargs):
        return Executor(self.original, self.class_obj, self.wrappers, self.idx + 1).execute(*args, **kwargs)

    def execute(self, *args, **kwargs):
        if self.idx == len(self.wrappers):
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)


class Patcher:
    """The parts of ModelPatcher the patch uses: model_options (deep-copied by clone) and wrappers."""

    def __init__(self, model):
        self.model, self.model_options, self.wrappers = model, {"transformer_options": {}}, {}

    def clone(self):
        n = Patcher(self.model)
        n.model_options = copy.deepcopy(self.model_options)
        n.wrappers = {t: {k: list(v) for k, v in d.items()} for t, d in self.wrappers.items()}
        return n

    def add_wrapper_with_key(self, kind, key, fn):
        self.wrappers.setdefault(kind, {}).setdefault(key, []).append(fn)

    def remove_wrappers_with_key(self, kind, key):
        self.wrappers.get(kind, {}).pop(key, None)

    def run(self, x, context, reference=None, time_dim_concat=None, extra_options=None):
        """One denoiser call as the sampler makes it: transformer_options copied, wrappers attached."""
        options = dict(self.model_options["transformer_options"])
        options.update(extra_options or {})
        wrappers = [w for d in self.wrappers.get("diffusion_model", {}).values() for w in d]
        kwargs = {} if reference is None else {"reference_latent": reference}
        return Executor(self.model._forward, self.model, wrappers).execute(
            x, torch.zeros(x.shape[0]), context, None, time_dim_concat, options, **kwargs)


class WanModel(nn.Module):
    """Wan's token order and attention calls with random weights: patchify 1x2x2, per block one self-attention
    over all tokens and one cross-attention to the text, an optional reference frame before the video
    (ref_conv) and frames concatenated after it in time."""

    patch_size = (1, 2, 2)

    def __init__(self, channels=4, blocks=2, seed=0):
        super().__init__()
        dim = HEADS * DIM
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.embed = nn.Linear(channels * 4, dim)
            self.ref_conv = nn.Linear(channels * 4, dim)
            self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(blocks))
            self.cross = nn.ModuleList(nn.Linear(dim, dim) for _ in range(blocks))
            self.text = nn.Linear(8, 2 * dim)

    @staticmethod
    def _patches(x):  # (B, C, T, H, W) -> (B, T*h*w, C*4), frame-major raster order
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t, h // 2, 2, w // 2, 2).permute(0, 2, 3, 5, 1, 4, 6)
        return x.reshape(b, t * (h // 2) * (w // 2), c * 4)

    def _forward(self, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options=None,
                 **kwargs):
        options = transformer_options
        if time_dim_concat is not None:
            x = torch.cat([x, time_dim_concat], dim=2)
        tokens = self.embed(self._patches(x))
        ref = kwargs.get("reference_latent")
        if ref is not None:
            tokens = torch.cat([self.ref_conv(self._patches(ref[:, :, None])), tokens], dim=1)
        tk, tv = self.text(context).chunk(2, dim=-1)
        options["total_blocks"] = len(self.qkv)
        for i, (qkv, cross) in enumerate(zip(self.qkv, self.cross, strict=True)):
            options["block_index"] = i
            q, k, v = qkv(tokens).chunk(3, dim=-1)
            tokens = tokens + dispatch(q, k, v, heads=HEADS, transformer_options=options)
            tokens = tokens + dispatch(cross(tokens), tk, tv, heads=HEADS, transformer_options=options)
        return tokens


# ---------------------------------------------------------------------- helpers


def poses(frames=FRAMES, h=H, w=W, seed=3):
    return PoseSequence(synthetic_keypoints(frames, h, w, seed=seed), h, w, fps=25.0)


def latent(batch=2, frames=FRAMES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, (frames - 1) // 4 + 1, H // 8, W // 8, generator=g)


def text(batch=2, seed=1):
    return torch.randn(batch, TEXT, 8, generator=torch.Generator().manual_seed(seed))


def additive(mask):
    """A boolean token mask as the additive float mask every ComfyUI attention function reads the same way
    (on CPU ComfyUI uses sub-quadratic attention, which adds a mask to the scores: a bool would add 0 or 1)."""
    return torch.zeros(mask.shape).masked_fill(~mask, -torch.finfo(torch.float32).max)


class MaskOverride:
    """Reference: ComfyUI's own attention with an explicit token mask on self-attention (k as long as q)."""

    def __init__(self, mask):
        self.mask = additive(mask)

    def __call__(self, func, q, k, v, *args, **kwargs):
        if q.shape[1] == k.shape[1] == self.mask.shape[0]:
            kwargs["mask"] = self.mask
        return func(q, k, v, *args, **kwargs)


class Recorder:
    """An override already on the model (as SageAttention nodes set): records each call, then runs func."""

    def __init__(self):
        self.lengths = []

    def __call__(self, func, q, k, v, *args, **kwargs):
        self.lengths.append((q.shape[1], k.shape[1]))
        return func(q, k, v, *args, **kwargs)


def patched(model, options=None, seq=None):
    base = Patcher(model)
    clone = base.clone()
    install(clone, seq or poses(), options)
    return base, clone


# ---------------------------------------------------------------------- tests


def test_all_dense_plan_equals_the_unpatched_model():
    model = WanModel()
    x, ctx = latent(), text()
    dense = PatchOptions(plan=PlanConfig(top_k=8, local=False, causal=False, block_size=16))
    base, clone = patched(model, dense)
    with torch.no_grad():
        want = base.run(x, ctx)
        got = clone.run(x, ctx)
    patch = clone.model_options["transformer_options"][OVERRIDE_KEY]
    assert patch.sparse_calls == 2 and patch.dense_calls == 2  # 2 blocks: self sparse, cross passed on
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("extra", [{}, {"background": True, "sink_first": True}])  # every option reaches the plan
@pytest.mark.parametrize("mode", ["exact", "pooled"])
@pytest.mark.parametrize("backend", ["gather", "dense", "auto"])
def test_iasa_equals_the_core_attention_with_the_plans_token_mask(mode, backend, extra):
    model = WanModel()
    x, ctx = latent(), text()
    opts = PatchOptions(plan=PlanConfig(top_k=1, block_size=16, mode=mode, **extra), backend=backend)
    base, clone = patched(model, opts)
    plan = build_plan(poses().keypoints, (H, W), top_k=1, block_size=16, mode=mode, **extra)
    assert 0.0 < plan.token_density < 1.0  # a real pattern, not all or nothing
    reference = base.clone()
    reference.model_options["transformer_options"][OVERRIDE_KEY] = MaskOverride(plan.token_mask())
    with torch.no_grad():
        want = reference.run(x, ctx)
        got = clone.run(x, ctx)
        dense = base.run(x, ctx)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert not torch.allclose(got, dense, atol=1e-3)  # the mask made a difference


def test_self_and_cross_attention_are_told_apart_and_the_input_model_is_untouched():
    model = WanModel()
    before = Recorder()
    base = Patcher(model)
    base.model_options["transformer_options"][OVERRIDE_KEY] = before
    clone = base.clone()
    copied = clone.model_options["transformer_options"][OVERRIDE_KEY]  # clone deep-copies model_options
    patch = install(clone, poses(), PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))
    # the input model keeps its own override and no wrapper of ours
    assert base.model_options["transformer_options"][OVERRIDE_KEY] is before
    assert base.wrappers == {}
    assert patch.previous is copied
    with torch.no_grad():
        clone.run(latent(), text())
    seq = 3 * 4 * 6
    # the earlier override saw every cross-attention (text keys) and no self-attention
    assert copied.lengths == [(seq, TEXT), (seq, TEXT)] and before.lengths == []
    assert patch.sparse_calls == 2
    assert LAYOUT_KEY not in clone.model_options["transformer_options"]  # the wrapper cleans up


def test_chaining_keeps_the_earlier_override_and_repatching_replaces_ours():
    model = WanModel()
    base = Patcher(model)
    sage = Recorder()
    base.model_options["transformer_options"][OVERRIDE_KEY] = sage
    once = base.clone()
    first = install(once, poses())
    assert isinstance(first.previous, Recorder)
    twice = once.clone()
    second = install(twice, poses(), PatchOptions(dense_steps=0, plan=PlanConfig(top_k=1, block_size=16)))
    assert second.previous is first.previous  # not the first IASA patch: one IASA layer, still chained to sage
    assert len(twice.wrappers["diffusion_model"]["iasa_sparse_attention"]) == 1
    assert first is once.model_options["transformer_options"][OVERRIDE_KEY]
    # a clone of a patched model shares the patch (and its plan cache) instead of deep-copying it
    assert twice.clone().model_options["transformer_options"][OVERRIDE_KEY] is second


def test_plan_is_built_once_and_reused_for_blocks_steps_and_batches():
    model = WanModel(blocks=3)
    base, clone = patched(model, PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))
    patch = clone.model_options["transformer_options"][OVERRIDE_KEY]
    with torch.no_grad():
        for step in range(3):
            clone.run(latent(batch=1 + step % 2, seed=step), text(batch=1 + step % 2))
    assert patch.sparse_calls == 9 and len(patch._plans) == 1


def test_reference_frame_before_and_concatenated_frames_after_stay_dense():
    model = WanModel()
    x, ctx = latent(), text()
    ref = torch.randn(2, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(5))
    concat = torch.randn(2, 4, 1, H // 8, W // 8, generator=torch.Generator().manual_seed(6))
    opts = PatchOptions(plan=PlanConfig(top_k=1, block_size=16))
    base, clone = patched(model, opts)
    plan = build_plan(poses().keypoints, (H, W), top_k=1, block_size=16)
    n = 4 * 6
    padded = PaddedPlan(plan, prefix=n, suffix=n)
    mask = padded.token_mask()
    assert mask[:n].all() and mask[:, :n].all() and mask[-n:].all() and mask[:, -n:].all()
    assert torch.equal(mask[n:-n, n:-n], plan.token_mask())
    reference = base.clone()
    reference.model_options["transformer_options"][OVERRIDE_KEY] = MaskOverride(mask)
    with torch.no_grad():
        want = reference.run(x, ctx, reference=ref, time_dim_concat=concat)
        got = clone.run(x, ctx, reference=ref, time_dim_concat=concat)
    assert clone.model_options["transformer_options"][OVERRIDE_KEY].sparse_calls == 2
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_padded_plan_gather_equals_its_token_mask():
    from iasa_core.sparse.attention import sparse_attention

    plan = build_plan(poses().keypoints, (H, W), top_k=1, block_size=16)
    padded = PaddedPlan(plan, prefix=5, suffix=3)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, padded.seq_len, HEADS, DIM, generator=g) for _ in range(3))
    want = sparse_attention(q, k, v, padded, backend="dense")
    got = sparse_attention(q, k, v, padded, backend="gather")
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_skip_reshape_layout_is_kept():
    plan = build_plan(poses().keypoints, (H, W), top_k=1, block_size=16)
    patch = IASAAttentionPatch(poses(), PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))
    layout = TokenLayout(frames=3, rows=4, cols=6)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, HEADS, plan.seq_len, DIM, generator=g) for _ in range(3))
    options = {LAYOUT_KEY: layout}
    for skip_out in (False, True):
        got = patch(core_attention, q, k, v, HEADS, skip_reshape=True, skip_output_reshape=skip_out,
                    transformer_options=options)
        want = core_attention(q, k, v, HEADS, mask=plan.token_mask(), skip_reshape=True,
                              skip_output_reshape=skip_out)
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5, rtol=0)


def test_context_window_gets_the_plan_of_its_own_poses():
    seq = poses(frames=21)  # 6 latent frames; the window samples latent frames 2..4
    patch = IASAAttentionPatch(seq, PatchOptions(plan=PlanConfig(top_k=1, block_size=16)))

    class ContextWindow:
        dim, index_list = 2, [2, 3, 4]

    x = torch.zeros(1, 4, 3, H // 8, W // 8)
    layout = layout_from_forward(WanModel(), (x, None, text(1)), {}, {"context_window": ContextWindow()})
    assert (layout.frames, layout.first_frame, layout.prefix, layout.problem) == (3, 2, 0, "")
    got = patch._plan(layout)
    want = build_plan(seq.keypoints[Window(2, 5).video_frames], (H, W), top_k=1, block_size=16)
    assert torch.equal(got.token_mask(), want.token_mask())
    ContextWindow.index_list = [0, 2, 4]  # strided: no honest mapping -> a problem, hence dense
    layout = layout_from_forward(WanModel(), (x, None, text(1)), {}, {"context_window": ContextWindow()})
    assert layout.problem


def test_dense_steps_and_blocks():
    model = WanModel(blocks=4)
    opts = PatchOptions(plan=PlanConfig(top_k=1, block_size=16), dense_steps=1, dense_first_blocks=1,
                        dense_last_blocks=1)
    base, clone = patched(model, opts)
    patch = clone.model_options["transformer_options"][OVERRIDE_KEY]
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    with torch.no_grad():
        clone.run(latent(), text(), extra_options={"sample_sigmas": sigmas, "sigmas": sigmas[:1]})
        assert patch.sparse_calls == 0  # step 0 is dense
        clone.run(latent(), text(), extra_options={"sample_sigmas": sigmas, "sigmas": sigmas[1:2]})
    assert patch.sparse_calls == 2  # blocks 1 and 2 of 0..3


def test_unmappable_layouts_stay_dense_with_one_warning(caplog):
    model = WanModel()
    x, ctx = latent(), text()
    wide = poses(h=64, w=64)  # a square canvas for a 64x96 video: no honest token mapping
    base, clone = patched(model, PatchOptions(plan=PlanConfig(top_k=1, block_size=16)), seq=wide)
    patch = clone.model_options["transformer_options"][OVERRIDE_KEY]
    with caplog.at_level(logging.WARNING, logger="iasa_core.sparse"), torch.no_grad():
        got = clone.run(x, ctx)
        clone.run(x, ctx)
        want = base.run(x, ctx)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "aspect" in warnings[0].getMessage()
    assert patch.sparse_calls == 0 and torch.allclose(got, want, atol=1e-6, rtol=0)


def test_too_few_poses_and_unknown_models_stay_dense():
    short = poses(frames=5)  # 2 latent frames for a 3-frame latent
    patch = IASAAttentionPatch(short)
    assert patch._plan(TokenLayout(frames=3, rows=4, cols=6)) is None
    assert any("cover 2 latent frames" in w for w in patch._warned)

    class HumoWanModel(WanModel):
        pass

    layout = layout_from_forward(HumoWanModel(), (latent(), None, text()), {}, {})
    assert "not a Wan model this patch can map" in layout.problem


def test_self_attention_as_long_as_the_text_is_not_guessed(caplog):
    patch = IASAAttentionPatch(poses())
    layout = TokenLayout(frames=3, rows=4, cols=6, cross_lengths=(72,))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 72, HEADS * DIM, generator=g) for _ in range(3))
    with caplog.at_level(logging.WARNING, logger="iasa_core.sparse"):
        got = patch(core_attention, q, k, v, HEADS, transformer_options={LAYOUT_KEY: layout})
    assert patch.sparse_calls == 0 and torch.allclose(got, core_attention(q, k, v, HEADS))
    assert "cannot be told apart" in caplog.text


def test_animate_reference_frame_is_dense():
    class AnimateWanModel(WanModel):
        pass

    x = torch.zeros(1, 4, 4, H // 8, W // 8)  # 1 reference latent frame + 3 video latent frames
    layout = layout_from_forward(AnimateWanModel(), (x, None, text(1)), {}, {})
    assert (layout.frames, layout.prefix, layout.first_frame) == (3, 24, 0)
    plan = IASAAttentionPatch(poses())._plan(layout)
    assert isinstance(plan, PaddedPlan) and plan.seq_len == 4 * 24


def test_options_are_checked():
    with pytest.raises(ValueError, match="backend"):
        PatchOptions(backend="fast")
    with pytest.raises(ValueError, match="dense_steps"):
        PatchOptions(dense_steps=-1)
    assert np.isclose(PatchOptions().plan.top_k, 2)


def test_node_returns_a_patched_clone_and_leaves_its_input_alone():
    from test_nodes import _import_pack

    from iasa_core.sparse.native_patch import BACKEND_CHOICES

    node = _import_pack().NODE_CLASS_MAPPINGS["IASAPatchModel"]()
    assert node.INPUT_TYPES()["required"]["backend"][0] == list(BACKEND_CHOICES)
    base = Patcher(WanModel())
    (out,) = node.patch(base, poses().to_pose_keypoint(), top_k=1, regions="face, hands", block_size=16,
                        dense_last_blocks=1)
    assert out is not base and base.model_options == {"transformer_options": {}} and base.wrappers == {}
    patch = out.model_options["transformer_options"][OVERRIDE_KEY]
    assert patch.options.plan.regions == ("face", "hands") and patch.options.dense_last_blocks == 1
    with torch.no_grad():
        out.run(latent(), text())
    assert patch.sparse_calls == 1  # block 0 sparse, the last block (1) dense


def test_the_cores_grid_sizes_is_checked_against_the_latent():
    from iasa_core.sparse.native_layout import check_grid_sizes

    layout = TokenLayout(frames=3, rows=4, cols=6, prefix=24)
    assert check_grid_sizes(layout, {}) is layout  # older cores give none
    assert check_grid_sizes(layout, {"grid_sizes": (4, 4, 6)}) is layout  # reference frame + 3 video frames
    assert check_grid_sizes(layout, {"grid_sizes": torch.tensor([3, 4, 6])}) is layout
    assert "disagree" in check_grid_sizes(layout, {"grid_sizes": (3, 6, 4)}).problem
    assert "disagree" in check_grid_sizes(layout, {"grid_sizes": (5, 4, 6)}).problem
    assert "not (frames, h, w)" in check_grid_sizes(layout, {"grid_sizes": "4x6"}).problem
