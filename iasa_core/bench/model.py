"""`bench model`: one DiT step with dense and with IASA self-attention, side by side, on random weights."""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..model.pose_wan import Condition, PoseFeatures, PoseWanTransformer
from ..model.presets import get_preset
from ..model.sparse_patch import sparse_attention_enabled
from ..pose.synthetic import synthetic_keypoints
from ..sparse import build_plan
from ..sparse.attention import sparse_attention
from .attention import _time

STUDENT_STEPS = 4
PAPER_FPS = 25.3


@dataclass(frozen=True)
class ModelCase:
    """One benchmark configuration."""

    name: str
    preset: str
    height: int
    width: int
    frames: int
    dtype: str
    image_tokens: int = 257


# ~8k tokens (21 x 16 x 24) on a 12 x 64-head, 2-layer model: sized for 2 CPU cores; fp32 and, on CPUs with
# native bf16 (AMX / AVX512-BF16), bf16 side by side.
CPU_CASES = (ModelCase("bench-cpu-256x384x81", "bench-cpu", 256, 384, 81, "float32"),
             ModelCase("bench-cpu-256x384x81-bf16", "bench-cpu", 256, 384, 81, "bfloat16"))
CUDA_CASES = (
    ModelCase("wan14b-512x512x81", "wan2.1-i2v-14b", 512, 512, 81, "bfloat16"),
    ModelCase("wan14b-480x832x81", "wan2.1-i2v-14b", 480, 832, 81, "bfloat16"),
    ModelCase("wan1.3b-512x512x81", "wan2.1-1.3b", 512, 512, 81, "bfloat16"),
    ModelCase("wan1.3b-480x832x81", "wan2.1-1.3b", 480, 832, 81, "bfloat16"),
)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak (KiB on Linux)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_model_case(case: ModelCase, device: torch.device, top_k: int = 2, mode: str = "exact",
                   repeats: int = 2, backend: str = "auto", log=print) -> dict:
    """Time one denoiser step dense and sparse, and attention alone, for ``case``."""
    if device.type == "cuda":
        gc.collect()  # the previous case's model (28 GB at 14B) must be gone before this one is built
        torch.cuda.empty_cache()
    dtype = getattr(torch, case.dtype)
    config = get_preset(case.preset)
    config.image_encoder = None
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build big models directly in their dtype (no fp32 copy)
    try:
        with torch.device(device):
            model = PoseWanTransformer(config).eval().requires_grad_(False)
    finally:
        torch.set_default_dtype(default)
    tr = config.transformer
    f, h, w = (case.frames - 1) // 4 + 1, case.height // 8, case.width // 8
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    latents = rand(1, tr["out_channels"], f, h, w)
    cond = Condition(rand(1, config.condition_channels, f, h, w), rand(1, config.text_len, tr["text_dim"]),
                     rand(1, case.image_tokens, tr["image_dim"]))
    pose = PoseFeatures(rand(1, config.dim, f, h // 2, w // 2) * 0.1, rand(1, config.condition_channels, 1, h, w))
    t = torch.tensor([500.0], device=device)
    kp = synthetic_keypoints(case.frames, case.height, case.width, seed=0)
    plan = build_plan(kp, (case.height, case.width), num_frames=case.frames, top_k=top_k, mode=mode)
    log(f"{case.name}: {plan.seq_len} tokens, {tr['num_layers']} layers of {tr['num_attention_heads']}x"
        f"{tr['attention_head_dim']}, {case.dtype}; plan density {plan.density:.3f} built in "
        f"{plan.build_seconds * 1000:.0f} ms")

    with torch.no_grad():
        _reset_peak(device)
        dense_s = _time(lambda: model(latents, t, cond, pose), device, repeats)
        dense_mem = _peak_mb(device)
        _reset_peak(device)
        with sparse_attention_enabled(model, plan, backend) as state:
            sparse_s = _time(lambda: model(latents, t, cond, pose), device, repeats)
        sparse_mem = _peak_mb(device)
        heads, hd = tr["num_attention_heads"], tr["attention_head_dim"]
        q, k, v = (rand(1, plan.seq_len, heads, hd) for _ in range(3))
        layers = tr["num_layers"]
        attn_dense_s = _time(lambda: F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), device, repeats) * layers
        attn_sparse_s = _time(lambda: sparse_attention(q, k, v, plan, backend=backend), device, repeats) * layers
    used = state.backend if backend != "auto" else ("flashinfer" if device.type == "cuda" else "gather")
    frames = case.frames
    result = {
        "case": asdict(case), "seq_len": plan.seq_len, "density": plan.density, "backend": used,
        "dense_step_s": dense_s, "iasa_step_s": sparse_s, "step_speedup": dense_s / sparse_s,
        "attention_share_dense": min(1.0, attn_dense_s / dense_s),
        "attention_share_iasa": min(1.0, attn_sparse_s / sparse_s),
        "attention_dense_s": attn_dense_s, "attention_iasa_s": attn_sparse_s,
        "attention_speedup": attn_dense_s / attn_sparse_s,
        "peak_memory_mb_dense": dense_mem, "peak_memory_mb_iasa": sparse_mem,
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "student_steps": STUDENT_STEPS,
        "student_fps_dense": frames / (STUDENT_STEPS * dense_s),
        "student_fps_iasa": frames / (STUDENT_STEPS * sparse_s),
        "paper_fps": PAPER_FPS,
    }
    log(f"  step: dense {dense_s:.3f} s, IASA ({used}) {sparse_s:.3f} s -> {result['step_speedup']:.2f}x; "
        f"attention share {result['attention_share_dense']:.0%} dense, {result['attention_share_iasa']:.0%} IASA; "
        f"attention alone {result['attention_speedup']:.2f}x")
    log(f"  peak memory ({result['peak_memory_kind']}): dense {dense_mem:.0f} MB, IASA {sparse_mem:.0f} MB")
    log(f"  {STUDENT_STEPS}-step student, DiT only: {result['student_fps_dense']:.2f} FPS dense, "
        f"{result['student_fps_iasa']:.2f} FPS IASA (paper: {PAPER_FPS} FPS on an H100, end to end)")
    return result


def bench_model(device: str | None = None, top_k: int = 2, mode: str = "exact", repeats: int = 2,
                cases: tuple[ModelCase, ...] | None = None, backend: str = "auto", log=print) -> dict:
    """The CPU cases (or the 14B and 1.3B CUDA cases on a GPU); returns all results."""
    from ..node_support import fast_bf16

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cases is None:
        cases = CUDA_CASES if dev.type == "cuda" else CPU_CASES
        if dev.type == "cpu" and not fast_bf16(dev):
            log("this CPU has no native bf16 (AMX / AVX512-BF16): the bf16 case is skipped (emulated, slower)")
            cases = tuple(c for c in cases if c.dtype != "bfloat16")
    log(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} CPU threads")
    t0 = time.perf_counter()
    results = [run_model_case(c, dev, top_k, mode, repeats, backend, log=log) for c in cases]
    out = {"torch": torch.__version__, "device": str(dev), "seconds": time.perf_counter() - t0, "results": results}
    by_dtype = {r["case"]["dtype"]: r for r in results if r["case"]["preset"] == results[0]["case"]["preset"]}
    if {"float32", "bfloat16"} <= set(by_dtype):
        fp32, bf16 = by_dtype["float32"], by_dtype["bfloat16"]
        out["bf16_speedup"] = {"dense_step": fp32["dense_step_s"] / bf16["dense_step_s"],
                               "iasa_step": fp32["iasa_step_s"] / bf16["iasa_step_s"]}
        log(f"bf16 vs fp32, same run: dense step {out['bf16_speedup']['dense_step']:.2f}x, IASA step "
            f"{out['bf16_speedup']['iasa_step']:.2f}x")
    return out
