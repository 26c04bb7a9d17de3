"""Stage-2 model on the tiny preset: shapes, pose conditioning, the sparse patch, checkpoints, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from iasa_core.model.checkpoint import load_student, save_student
from iasa_core.model.loading import load_model, load_pose_weights
from iasa_core.model.pose_wan import Condition
from iasa_core.model.presets import PRESETS, get_preset
from iasa_core.model.sparse_patch import SparseSelfAttnProcessor, sparse_attention_enabled
from iasa_core.model.system import PoseWanSystem
from iasa_core.model.weights import diffusers_to_wan_native
from iasa_core.pose.render import RenderStyle
from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sparse.grid import TokenGrid
from iasa_core.sparse.plan import build_plan, dense_plan

T, H, W = 9, 64, 96  # 3 latent frames of 4x6 tokens


@pytest.fixture(scope="module")
def system() -> PoseWanSystem:
    return PoseWanSystem.random(get_preset("tiny"), seed=0)


@pytest.fixture(scope="module")
def inputs(system):
    g = torch.Generator().manual_seed(1)
    f, h, w = (T - 1) // 4 + 1, H // 8, W // 8
    latents = torch.randn(1, 16, f, h, w, generator=g)
    cond = Condition(torch.randn(1, 20, f, h, w, generator=g), torch.randn(1, 512, 16, generator=g),
                     torch.randn(1, 5, 16, generator=g))
    with torch.no_grad():
        pose = system.denoiser.encode_poses(torch.rand(1, 3, T, H, W, generator=g) * 255,
                                            torch.rand(1, 3, H, W, generator=g) * 255)
    return latents, torch.tensor([500.0]), cond, pose


def _run(system, inputs, pose="given"):
    latents, t, cond, p = inputs
    with torch.no_grad():
        return system.denoiser(latents, t, cond, p if pose == "given" else pose)


def test_presets_share_classes_and_sizes():
    assert {"tiny", "wan2.1-1.3b", "wan2.1-i2v-14b"} <= set(PRESETS)
    big = get_preset("wan2.1-i2v-14b")
    assert big.dim == 5120 and big.transformer["num_layers"] == 40 and big.condition_channels == 20
    assert get_preset("wan2.1-1.3b").dim == 1536
    with pytest.raises(ValueError, match="unknown model preset"):
        get_preset("wan9")


def test_output_shape_and_pose_features(system, inputs):
    latents, _, _, pose = inputs
    assert pose.video.shape == (1, 24, 3, H // 16, W // 16)  # dim x latent frames x token grid
    assert pose.ref.shape == (1, 20, 1, H // 8, W // 8)
    out = _run(system, inputs)
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_pose_input_changes_output(system, inputs):
    with_pose = _run(system, inputs)
    without = _run(system, inputs, pose=None)
    assert (with_pose - without).abs().max() > 1e-3


def test_pose_video_size_mismatch_is_explained(system, inputs):
    latents, t, cond, _ = inputs
    with torch.no_grad():
        wrong = system.denoiser.encode_poses(torch.rand(1, 3, T, H, W + 32) * 255)
        with pytest.raises(ValueError, match="pose features .* do not match the patch tokens"):
            system.denoiser(latents, t, cond, wrong)


def test_dense_plan_equals_unpatched_model(system, inputs):
    reference = _run(system, inputs)
    with sparse_attention_enabled(system.denoiser, dense_plan(TokenGrid(T, H, W), 128), "gather") as state:
        patched = _run(system, inputs)
    assert state.calls == 2  # both layers went through the sparse processor
    assert (patched - reference).abs().max() <= 1e-5


def test_patch_touches_self_attention_only_and_restores(system, inputs):
    plan = dense_plan(TokenGrid(T, H, W), 128)
    blocks = system.denoiser.transformer.blocks
    before = [(b.attn1.processor, b.attn2.processor) for b in blocks]
    with sparse_attention_enabled(system.denoiser, plan):
        assert all(isinstance(b.attn1.processor, SparseSelfAttnProcessor) for b in blocks)
        assert all(b.attn2.processor is p2 for b, (_, p2) in zip(blocks, before, strict=True))
    assert [(b.attn1.processor, b.attn2.processor) for b in blocks] == before
    with pytest.raises(KeyError), sparse_attention_enabled(system.denoiser, plan):
        raise KeyError("boom")  # restored on errors too
    assert [b.attn1.processor for b in blocks] == [p1 for p1, _ in before]


def test_iasa_model_equals_dense_masked_model(system, inputs):
    plan = build_plan(synthetic_keypoints(T, H, W), (H, W), T, top_k=1, block_size=8)
    assert plan.token_density < 0.9  # really sparse
    with sparse_attention_enabled(system.denoiser, plan, "gather"):
        gathered = _run(system, inputs)
    with sparse_attention_enabled(system.denoiser, plan, "dense"):
        masked = _run(system, inputs)
    assert (gathered - masked).abs().max() <= 1e-5
    assert (gathered - _run(system, inputs)).abs().max() > 1e-4  # and it is not the dense model


def test_plan_for_another_size_is_refused(system, inputs):
    plan = dense_plan(TokenGrid(T, H, W + 16), 128)
    with sparse_attention_enabled(system.denoiser, plan), pytest.raises(ValueError, match="plan was built for"):
        _run(system, inputs)


def test_student_save_load_identical(system, inputs, tmp_path):
    path = save_student(system, tmp_path / "student.safetensors")
    loaded = load_student(path)
    assert loaded.schedule == system.schedule and loaded.sparse == system.sparse
    assert loaded.config == system.config
    assert torch.equal(_run(loaded, inputs), _run(system, inputs))
    image = (np.arange(H * W * 3) % 251).astype(np.uint8).reshape(H, W, 3)
    with torch.no_grad():
        a, b = system.condition(image, T), loaded.condition(image, T)
    assert torch.equal(a.y, b.y) and torch.equal(a.image, b.image) and torch.equal(a.text, b.text)
    assert load_model(path).source == str(path)


def test_student_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_student(tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="not an IASA student checkpoint"):
        load_student(plain)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")


def _unianimate_state(denoiser) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in denoiser.state_dict().items():
        if key.startswith(("pose_encoder.", "ref_pose_encoder.")):
            module, _, index, param = key.split(".")
            name = "dwpose_embedding" if module == "pose_encoder" else "randomref_embedding_pose"
            out[f"{name}.{2 * int(index)}.{param}"] = value.clone() + 1.0
    return out


def test_unianimate_pose_weights_load_through_key_map(tmp_path):
    system = PoseWanSystem.random(get_preset("tiny"), seed=3)
    state = _unianimate_state(system.denoiser)
    state["pipe.dit.blocks.0.self_attn.q.lora_A.default.weight"] = torch.zeros(4, 24)  # their LoRA rides along
    torch.save(state, tmp_path / "unianimate.pth")
    loaded = load_pose_weights(system.denoiser, tmp_path / "unianimate.pth")
    assert len(loaded) == 26  # 7 + 6 convs, weight and bias
    assert torch.equal(system.denoiser.pose_encoder.convs[6].weight, state["dwpose_embedding.12.weight"])
    assert torch.equal(system.denoiser.ref_pose_encoder.convs[0].bias, state["randomref_embedding_pose.0.bias"])
    big = {k: v for k, v in state.items() if k.startswith("dwpose_embedding.12")}
    big["dwpose_embedding.12.weight"] = torch.zeros(5120, 16, 1, 2, 2)
    torch.save(big, tmp_path / "big.pth")
    with pytest.raises(ValueError, match="does not fit this model's pose encoders"):
        load_pose_weights(system.denoiser, tmp_path / "big.pth")


def test_wan_native_file_with_pose_weights_and_lora(system, inputs, tmp_path):
    native = diffusers_to_wan_native(system.denoiser.transformer.state_dict())
    save_file({k: v.contiguous() for k, v in native.items()}, str(tmp_path / "wan_tiny.safetensors"))
    torch.save(_unianimate_state(system.denoiser), tmp_path / "unianimate.pth")
    system.vae.save_pretrained(tmp_path / "vae")
    system.image_encoder.save_pretrained(tmp_path / "clip")
    kwargs = dict(head_dim=12, pose_weights=tmp_path / "unianimate.pth", vae=tmp_path / "vae",
                  image_encoder=tmp_path / "clip", prompt_embeds=system.prompt_embeds)
    with pytest.raises(ValueError, match="pose_weights"):
        load_model(tmp_path / "wan_tiny.safetensors", head_dim=12)
    loaded = load_model(tmp_path / "wan_tiny.safetensors", **kwargs)
    ref = system.denoiser.transformer.blocks[1].attn1.to_q.weight
    assert torch.allclose(loaded.denoiser.transformer.blocks[1].attn1.to_q.weight, ref)
    assert torch.equal(loaded.denoiser.pose_encoder.convs[0].weight, system.denoiser.pose_encoder.convs[0].weight + 1)
    # a community-format LoRA merged with a strength
    g = torch.Generator().manual_seed(5)
    down, up = torch.randn(4, 24, generator=g), torch.randn(24, 4, generator=g)
    lora = {"diffusion_model.blocks.1.self_attn.q.lora_down.weight": down,
            "diffusion_model.blocks.1.self_attn.q.lora_up.weight": up,
            "diffusion_model.blocks.1.self_attn.q.alpha": torch.tensor(2.0)}
    save_file(lora, str(tmp_path / "lora.safetensors"))
    merged = load_model(tmp_path / "wan_tiny.safetensors", loras=[(tmp_path / "lora.safetensors", 0.5)], **kwargs)
    expected = ref + 0.5 * (2.0 / 4) * (up @ down)
    assert torch.allclose(merged.denoiser.transformer.blocks[1].attn1.to_q.weight, expected, atol=1e-6)


def test_unknown_model_spec_is_explained():
    with pytest.raises(ValueError, match="neither an embedded model .*, a preset"):
        load_model("not-a-model")


def _tiny_umt5(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "person": 4, "talking": 5, "blurry": 6}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    UMT5EncoderModel(UMT5Config(vocab_size=8, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                                relative_attention_num_buckets=8)).save_pretrained(folder / "text_encoder")
    return folder


def test_prompt_encoder_and_prompt_conditioning(system, tmp_path):
    from iasa_core.model.text import PromptEncoder
    from iasa_core.pipeline import GenerateOptions, generate_video
    from iasa_core.pose.sequence import PoseSequence

    encoder = PromptEncoder(_tiny_umt5(tmp_path))
    emb = encoder("a person talking")
    assert emb.shape == (3, 16) and torch.isfinite(emb).all()
    ctx = system.text_context(emb)
    assert ctx.shape == (1, 512, 16) and torch.equal(ctx[0, :3], emb) and not ctx[0, 3:].any()
    poses = PoseSequence(synthetic_keypoints(5, 32, 32), 32, 32)
    image = np.full((32, 32, 3), 128, np.uint8)
    a = generate_video(system, image, poses, GenerateOptions(prompt_embeds=emb)).frames
    b = generate_video(system, image, poses, GenerateOptions()).frames
    assert not np.array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="no UMT5 text encoder"):
        PromptEncoder(tmp_path / "tokenizer")


def test_diffusers_folder_loads(system, inputs, tmp_path):
    system.denoiser.transformer.save_pretrained(tmp_path / "repo" / "transformer")
    system.vae.save_pretrained(tmp_path / "repo" / "vae")
    system.image_encoder.save_pretrained(tmp_path / "repo" / "image_encoder")
    torch.save(_unianimate_state(system.denoiser), tmp_path / "unianimate.pth")
    loaded = load_model(tmp_path / "repo", head_dim=12, pose_weights=tmp_path / "unianimate.pth",
                        prompt_embeds=system.prompt_embeds)
    assert loaded.schedule["kind"] == "teacher"
    latents, t, cond, _ = inputs
    with torch.no_grad():
        pose = loaded.denoiser.encode_poses(torch.zeros(1, 3, T, H, W), torch.zeros(1, 3, H, W))
        ours = system.denoiser.encode_poses(torch.zeros(1, 3, T, H, W), torch.zeros(1, 3, H, W))
        pose_shift = (pose.video - ours.video).abs().max()  # the +1 in _unianimate_state shows up
        out = loaded.denoiser(latents, t, cond, None)
        ref = system.denoiser(latents, t, cond, None)
    assert pose_shift > 0 and torch.allclose(out, ref, atol=1e-6)


def test_dropped_condition_is_the_unconditional_input_in_one_batch(system, inputs):
    from iasa_core.model.pose_wan import PoseFeatures, drop_condition, drop_pose

    x, t, cond, pose = inputs
    keep = torch.tensor([1.0, 0.0])
    both, feats = drop_condition(cond, keep), drop_pose(pose, keep)
    assert torch.equal(both.y[0], cond.y[0]) and not both.y[1].any() and not both.image[1].any()
    assert torch.equal(feats.video[0], pose.video[0]) and not feats.video[1].any() and not feats.ref[1].any()
    with torch.no_grad():
        batched = system.denoiser(x.expand(2, -1, -1, -1, -1), t.expand(2), both, feats)
        uncond = Condition(torch.zeros_like(cond.y), cond.text, torch.zeros_like(cond.image))
        alone = system.denoiser(x, t, uncond, PoseFeatures(torch.zeros_like(pose.video), torch.zeros_like(pose.ref)))
        cond_alone = system.denoiser(x, t, cond, pose)
    assert torch.allclose(batched[1:], alone, atol=1e-5) and torch.allclose(batched[:1], cond_alone, atol=1e-5)


def test_pose_video_encoder_matches_a_plain_convolution_chain():
    from torch.nn import functional as F

    from iasa_core.model.pose_encoder import LEADING_REPEATS, PoseVideoEncoder

    enc = PoseVideoEncoder(24, 8)
    video = torch.rand(1, 3, 9, 64, 64, generator=torch.Generator().manual_seed(4)) * 255
    x = torch.cat([video[:, :, :1].expand(-1, -1, LEADING_REPEATS, -1, -1), video], dim=2) / 255.0
    for i, conv in enumerate(enc.convs):  # the reference: default (contiguous) layout throughout
        x = F.conv3d(x, conv.weight, conv.bias, conv.stride, conv.padding)
        x = F.silu(x) if i < len(enc.convs) - 1 else x
    with torch.no_grad():
        out = enc(video)
    assert out.shape == (1, 24, 3, 4, 4)
    torch.testing.assert_close(out, x, rtol=1e-5, atol=1e-6)


def test_pose_style_follows_the_model_schedule():
    system = PoseWanSystem.random(get_preset("tiny"), seed=0)
    assert system.pose_style() == RenderStyle() and system.pose_render_settings() == {}
    system.schedule = dict(system.schedule, pose_bgr=True, pose_face=True)
    assert system.pose_style() == RenderStyle(bgr=True, face=True)
    assert system.pose_style(bgr=False) == RenderStyle(bgr=False, face=True)  # a caller may override the colours
    assert system.pose_render_settings() == {"pose_bgr": True, "pose_face": True}
    system.schedule = dict(system.schedule, pose_mouth=True)
    assert system.pose_style() == RenderStyle(bgr=True, face=True, mouth=True)
    assert system.pose_render_settings() == {"pose_bgr": True, "pose_face": True, "pose_mouth": True}
