"""Wan2.1 weight layouts, config inference, weight files, LoRA merging, UniAnimate keys, file lookup."""

from __future__ import annotations

import json
import socket

import pytest
import torch
from torch import nn

from iasa_core.model import weights as W
from iasa_core.model.resolve import resolve_model_dir, resolve_model_file

diffusers = pytest.importorskip("diffusers")
from diffusers import WanTransformer3DModel  # noqa: E402

TINY = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=36,
    out_channels=16,
    text_dim=16,
    freq_dim=16,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    image_dim=16,
    added_kv_proj_dim=24,
    rope_max_seq_len=32,
)


@pytest.fixture(scope="module")
def tiny() -> WanTransformer3DModel:
    """A tiny I2V Wan transformer with random (not default) weights."""
    torch.manual_seed(1)
    model = WanTransformer3DModel(**TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model


def _fresh(tiny: WanTransformer3DModel) -> WanTransformer3DModel:
    """A copy of the tiny model whose weights a test may change."""
    model = WanTransformer3DModel(**TINY).eval()
    model.load_state_dict(tiny.state_dict())
    return model


def _forward(model: WanTransformer3DModel) -> torch.Tensor:
    """Run the model on fixed random inputs."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 36, 2, 4, 4, generator=g)
    text = torch.randn(1, 5, 16, generator=g)
    image = torch.randn(1, 3, 16, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([500]), text, encoder_hidden_states_image=image).sample


# ---------------------------------------------------------------- layouts and config


def test_native_roundtrip_and_real_names(tiny):
    sd = tiny.state_dict()
    native = W.diffusers_to_wan_native(sd)
    for key in [
        "blocks.0.self_attn.q.weight",
        "blocks.0.self_attn.o.bias",
        "blocks.1.cross_attn.k_img.weight",
        "blocks.1.cross_attn.norm_k_img.weight",
        "blocks.0.norm3.weight",
        "blocks.0.ffn.0.weight",
        "blocks.1.modulation",
        "head.head.weight",
        "head.modulation",
        "time_projection.1.weight",
        "text_embedding.2.bias",
        "img_emb.proj.4.weight",
    ]:
        assert key in native, key
    assert native["blocks.0.norm3.weight"] is sd["blocks.0.norm2.weight"]
    assert len(native) == len(sd)
    assert W.detect_wan_layout(native) == "native"
    assert W.detect_wan_layout(sd) == "diffusers"
    back = W.wan_native_to_diffusers(native)
    assert back.keys() == sd.keys()
    assert all(back[k] is sd[k] for k in sd)
    comfy = {f"model.diffusion_model.{k}": v for k, v in native.items()}
    assert W.wan_native_to_diffusers(comfy).keys() == sd.keys()


def test_unknown_keys_are_listed(tiny):
    native = W.diffusers_to_wan_native(tiny.state_dict())
    native["vace_blocks.0.foo.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="vace_blocks.0.foo.weight"):
        W.wan_native_to_diffusers(native)
    kept = W.wan_native_to_diffusers(native, strict=False)
    assert "vace_blocks.0.foo.weight" in kept
    with pytest.raises(ValueError, match="already in the diffusers layout"):
        W.wan_native_to_diffusers(tiny.state_dict())


def test_infer_config_and_strict_load_gives_same_output(tiny):
    native = W.diffusers_to_wan_native(tiny.state_dict())
    cfg = W.infer_wan_config(native, head_dim=12)
    for k, v in TINY.items():
        if k != "rope_max_seq_len":  # not stored in weights
            assert cfg[k] == v, k
    assert W.infer_wan_config(tiny.state_dict(), head_dim=12) == cfg
    rebuilt = WanTransformer3DModel(**cfg).eval()
    rebuilt.load_state_dict(W.wan_native_to_diffusers(native), strict=True)
    assert torch.equal(_forward(rebuilt), _forward(tiny))
    with pytest.raises(ValueError, match="head_dim"):
        W.infer_wan_config(native)
    with pytest.raises(ValueError, match="does not look like a Wan2.1 transformer"):
        W.infer_wan_config({"encoder.conv1.weight": torch.zeros(3)})


def test_fp8_scaled_native_file_is_dequantized(tiny):
    native = dict(W.diffusers_to_wan_native(tiny.state_dict()))
    w = native["blocks.0.self_attn.q.weight"]
    scale = w.abs().max() / 448.0
    native["blocks.0.self_attn.q.weight"] = (w / scale).to(torch.float8_e4m3fn)
    native["blocks.0.self_attn.q.scale_weight"] = scale.reshape(())
    native["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    out = W.wan_native_to_diffusers(native)
    got = out["blocks.0.attn1.to_q.weight"]
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), w, atol=0.1 * w.abs().max().item())


# ---------------------------------------------------------------- files


class _NotATensor:
    pass


def test_load_state_dict_file(tmp_path, tiny):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in list(tiny.state_dict().items())[:4]}
    st = tmp_path / "m.safetensors"
    save_file(sd, str(st), metadata={"note": "hi"})
    got, meta = W.load_state_dict_file(st)
    assert meta["note"] == "hi" and all(torch.equal(got[k], sd[k]) for k in sd)
    pt = tmp_path / "m.ckpt"
    torch.save({"state_dict": sd}, pt)
    got, meta = W.load_state_dict_file(pt)
    assert meta == {} and got.keys() == sd.keys()
    plain = tmp_path / "m.pth"
    torch.save(sd, plain)
    assert W.load_state_dict_file(plain)[0].keys() == sd.keys()
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        W.load_state_dict_file(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not really")
    with pytest.raises(ValueError, match="bad.safetensors"):
        W.load_state_dict_file(bad)
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": _NotATensor()}, evil)
    with pytest.raises(ValueError, match="weights_only"):
        W.load_state_dict_file(evil)
    gguf = tmp_path / "x.gguf"
    gguf.write_text("x")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        W.load_state_dict_file(gguf)


# ---------------------------------------------------------------- LoRA

TARGETS = [
    "blocks.0.attn1.to_q",
    "blocks.1.attn2.add_k_proj",
    "blocks.0.ffn.net.0.proj",
    "proj_out",
    "patch_embedding",
    "condition_embedder.time_proj",
]


def _pieces(model: nn.Module, rank: int = 4) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Random (A, B) per target module, shaped for its weight."""
    mods = dict(model.named_modules())
    out = {}
    for name in TARGETS:
        w = mods[name].weight
        a = torch.randn(rank, *w.shape[1:])
        b = torch.randn(w.shape[0], rank, *([1] * (w.dim() - 2)))
        out[name] = (a, b)
    return out


def _write(fmt: str, pieces, alpha: float | None) -> dict[str, torch.Tensor]:
    """A LoRA state dict in one of the known formats."""
    sd = {}
    for name, (a, b) in pieces.items():
        native = W.diffusers_module_to_native(name)
        base, down, up = {
            "comfy": (f"diffusion_model.{native}", "lora_down.weight", "lora_up.weight"),
            "comfy_ab": (f"diffusion_model.{native}", "lora_A.weight", "lora_B.weight"),
            "diffusers": (f"transformer.{name}", "lora_A.weight", "lora_B.weight"),
            "peft": (f"base_model.model.{name}", "lora_A.default.weight", "lora_B.default.weight"),
            "diffsynth": (native, "lora_A.default.weight", "lora_B.default.weight"),
            "kohya": ("lora_unet_" + native.replace(".", "_"), "lora_down.weight", "lora_up.weight"),
        }[fmt]
        sd[f"{base}.{down}"], sd[f"{base}.{up}"] = a, b
        if alpha is not None:
            sd[f"{base}.alpha"] = torch.tensor(alpha)
    return sd


@pytest.mark.parametrize("fmt", ["comfy", "comfy_ab", "diffusers", "peft", "diffsynth", "kohya"])
@pytest.mark.parametrize("alpha", [None, 2.0])
def test_merge_lora_formats(tiny, fmt, alpha):
    model = _fresh(tiny)
    pieces = _pieces(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = _write(fmt, pieces, alpha)
    parsed = W.parse_lora(lora)
    assert set(parsed) == set(TARGETS)
    merged = W.merge_lora(model, lora, strength=0.7)
    assert sorted(merged) == sorted(TARGETS)
    scale = 1.0 if alpha is None else alpha / 4
    after = model.state_dict()
    for name, (a, b) in pieces.items():
        w0 = before[f"{name}.weight"]
        expect = w0 + 0.7 * scale * (b.flatten(1) @ a.flatten(1)).reshape(w0.shape)
        assert torch.allclose(after[f"{name}.weight"], expect, atol=1e-6, rtol=0), (fmt, name)
    untouched = "blocks.1.attn1.to_k.weight"
    assert torch.equal(after[untouched], before[untouched])


def test_strength_zero_leaves_weights(tiny):
    model = _fresh(tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert W.merge_lora(model, _write("comfy", _pieces(model), 1.0), strength=0.0) == []
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_diff_keys_prefix_and_bf16(tiny):
    model = _fresh(tiny)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lora = {
        "diffusion_model.blocks.0.self_attn.norm_q.diff": torch.randn(24),
        "diffusion_model.blocks.0.ffn.0.diff_b": torch.randn(32),
        "diffusion_model.head.head.diff": torch.randn(64, 24),
        "diffusion_model.blocks.1.modulation.diff": torch.randn(1, 6, 24),
        "diffusion_model.blocks.1.norm3.diff": torch.randn(24),
    }
    wrapper = nn.Module()
    wrapper.transformer = model
    merged = W.merge_lora(wrapper, lora, strength=0.5, prefix="transformer")
    assert "transformer.blocks.1.scale_shift_table" in merged
    sd = model.state_dict()
    pairs = [
        ("blocks.0.attn1.norm_q.weight", "diffusion_model.blocks.0.self_attn.norm_q.diff"),
        ("blocks.0.ffn.net.0.proj.bias", "diffusion_model.blocks.0.ffn.0.diff_b"),
        ("proj_out.weight", "diffusion_model.head.head.diff"),
        ("blocks.1.scale_shift_table", "diffusion_model.blocks.1.modulation.diff"),
        ("blocks.1.norm2.weight", "diffusion_model.blocks.1.norm3.diff"),
    ]
    for key, lkey in pairs:
        assert torch.allclose(sd[key], before[key] + 0.5 * lora[lkey], atol=1e-6, rtol=0), key

    lin = nn.Linear(24, 24).to(torch.bfloat16)
    host = nn.Module()
    host.blocks = nn.ModuleList([nn.Module()])
    host.blocks[0].attn1 = nn.Module()
    host.blocks[0].attn1.to_q = lin
    w0 = lin.weight.detach().clone()
    a, b = torch.randn(4, 24), torch.randn(24, 4)
    W.merge_lora(host, {"blocks.0.attn1.to_q.lora_A.weight": a, "blocks.0.attn1.to_q.lora_B.weight": b})
    assert lin.weight.dtype == torch.bfloat16
    assert torch.equal(lin.weight, (w0.float() + b @ a).to(torch.bfloat16))


def test_metadata_alpha_and_errors(tiny):
    model = _fresh(tiny)
    lora = _write("diffusers", _pieces(model), None)
    meta = {"lora_adapter_metadata": json.dumps({"transformer.lora_alpha": 8, "transformer.r": 4})}
    assert W.parse_lora(lora, meta)["proj_out"].scale == 2.0

    bad = dict(lora)
    bad["transformer.proj_out.lora_A.weight"] = torch.randn(4, 23)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        W.merge_lora(model, bad)
    msg = str(err.value)
    assert "transformer.proj_out.lora_A.weight" in msg and "'proj_out'" in msg
    assert "(64, 23)" in msg and "(64, 24)" in msg
    # Checked before merging: the model is untouched.
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    far = {
        "diffusion_model.blocks.7.self_attn.q.lora_down.weight": torch.randn(4, 24),
        "diffusion_model.blocks.7.self_attn.q.lora_up.weight": torch.randn(24, 4),
    }
    with pytest.raises(ValueError, match=r"blocks\.7\.self_attn\.q\.lora_down.*blocks\.7\.attn1\.to_q"):
        W.merge_lora(model, far)

    with pytest.raises(ValueError, match="unet.down_blocks.0.lora_down.weight"):
        W.parse_lora({"unet.down_blocks.0.lora_down.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no up"):
        W.parse_lora({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 24)})


# ---------------------------------------------------------------- UniAnimate


def _unianimate_shapes(out_dim: int = 24) -> tuple[list, list]:
    """(Conv3d specs, Conv2d specs) of UniAnimate-DiT's pose encoders: (in, out, kernel)."""
    c3 = [
        (3, 16, 3),
        (16, 16, 3),
        (16, 16, 3),
        (16, 16, 3),
        (16, 16, 3),
        (16, 16, 3),
        (16, out_dim, (1, 2, 2)),
    ]
    c2 = [(3, 16, 3), (16, 16, 3), (16, 16, 3), (16, 16, 3), (16, 16, 3), (16, 20, 3)]
    return c3, c2


class _Ours(nn.Module):
    """Stand-in with our module names and UniAnimate's shapes."""

    def __init__(self) -> None:
        super().__init__()
        c3, c2 = _unianimate_shapes()
        self.pose_encoder = nn.Module()
        self.pose_encoder.convs = nn.ModuleList(nn.Conv3d(i, o, k) for i, o, k in c3)
        self.ref_pose_encoder = nn.Module()
        self.ref_pose_encoder.convs = nn.ModuleList(nn.Conv2d(i, o, k) for i, o, k in c2)


@pytest.mark.parametrize("prefix", ["", "model.", "pipe."])
def test_unianimate_to_ours(prefix):
    ref = _Ours()
    theirs = {}
    for i, conv in enumerate(ref.pose_encoder.convs):
        theirs[f"{prefix}dwpose_embedding.{2 * i}.weight"] = torch.randn_like(conv.weight)
        theirs[f"{prefix}dwpose_embedding.{2 * i}.bias"] = torch.randn_like(conv.bias)
    for i, conv in enumerate(ref.ref_pose_encoder.convs):
        theirs[f"{prefix}randomref_embedding_pose.{2 * i}.weight"] = torch.randn_like(conv.weight)
        theirs[f"{prefix}randomref_embedding_pose.{2 * i}.bias"] = torch.randn_like(conv.bias)
    lora_key = "pipe.dit.blocks.0.self_attn.q.lora_A.default.weight"
    theirs[lora_key] = torch.randn(4, 24)
    pose, other = W.unianimate_to_ours(theirs)
    assert list(other) == [lora_key] and other[lora_key] is theirs[lora_key]
    ours = _Ours()
    ours.load_state_dict(pose, strict=True)
    assert torch.equal(ours.pose_encoder.convs[6].weight, theirs[f"{prefix}dwpose_embedding.12.weight"])
    assert torch.equal(
        ours.ref_pose_encoder.convs[5].bias, theirs[f"{prefix}randomref_embedding_pose.10.bias"]
    )
    with pytest.raises(ValueError, match="dwpose_embedding.1.weight"):
        W.unianimate_to_ours({"dwpose_embedding.1.weight": torch.zeros(1)})


# ---------------------------------------------------------------- resolve


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything tries to open a network connection."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _fake_hub_cache(root, repo: str, files: dict[str, bytes]) -> None:
    """Lay out files the way huggingface_hub caches them."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(rev)
    for name, data in files.items():
        path = repo_dir / "snapshots" / rev / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_resolve_file_path_dirs_and_cache(tmp_path, no_network):
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "wan").mkdir(parents=True)
    a.mkdir()
    target = b / "wan" / "student.safetensors"
    target.write_bytes(b"x")
    assert resolve_model_file(target) == target
    assert resolve_model_file("student.safetensors", search_dirs=[a, b]) == target
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "org/name", {"sub/lora.safetensors": b"y"})
    got = resolve_model_file(
        "lora.safetensors",
        search_dirs=[a],
        hf_repo="org/name",
        hf_filename="sub/lora.safetensors",
        cache_dir=cache,
    )
    assert got.read_bytes() == b"y" and "models--org--name" in str(got)


def test_resolve_file_missing_message(tmp_path, no_network):
    a = tmp_path / "loras"
    a.mkdir()
    with pytest.raises(FileNotFoundError) as err:
        resolve_model_file(
            "missing.safetensors",
            search_dirs=[a, tmp_path / "other"],
            hf_repo="org/name",
            cache_dir=tmp_path / "hub",
            what="LoRA",
        )
    msg = str(err.value)
    assert "missing.safetensors" in msg and str(a) in msg and str(tmp_path / "other") in msg
    assert "org/name" in msg and "LoRA" in msg


def test_resolve_dir(tmp_path, no_network):
    assert resolve_model_dir(tmp_path) == tmp_path
    cache = tmp_path / "hub"
    _fake_hub_cache(cache, "Wan-AI/Tiny-Diffusers", {"model_index.json": b"{}"})
    got = resolve_model_dir("Wan-AI/Tiny-Diffusers", cache_dir=cache)
    assert (got / "model_index.json").is_file()
    with pytest.raises(FileNotFoundError, match="downloading is off"):
        resolve_model_dir("Wan-AI/Not-Here", cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="not a Hugging Face repo id"):
        resolve_model_dir(str(tmp_path / "no" / "such" / "dir"))
