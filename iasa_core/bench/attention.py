"""`bench attention`: every available sparse backend against dense SDPA on Wan-like shapes."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..pose.synthetic import synthetic_keypoints
from ..sparse import build_plan
from ..sparse.attention import available_backends, sparse_attention


@dataclass(frozen=True)
class AttentionCase:
    """One benchmark shape."""

    name: str
    height: int
    width: int
    frames: int
    heads: int
    head_dim: int
    dtype: str


# About 8k tokens on CPU (21 latent frames x 16x24 tokens), 12 heads x 64 as in a small DiT.
CPU_CASES = (AttentionCase("cpu-256x384x81", 256, 384, 81, 12, 64, "float32"),)
# Wan2.1-14B attention (40 heads x 128) at the paper's and UniAnimate's training sizes.
CUDA_CASES = (
    AttentionCase("wan14b-512x512x81", 512, 512, 81, 40, 128, "bfloat16"),
    AttentionCase("wan14b-480x832x81", 480, 832, 81, 40, 128, "bfloat16"),
)


def _time(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def run_case(case: AttentionCase, device: torch.device, top_k: int = 2, mode: str = "exact",
             repeats: int = 3, backends: tuple[str, ...] | None = None, log=print) -> dict:
    """Time dense SDPA and each backend on one shape; returns a JSON-friendly dict."""
    dtype = getattr(torch, case.dtype)
    t0 = time.perf_counter()
    kp = synthetic_keypoints(case.frames, case.height, case.width, seed=0)
    plan = build_plan(kp, (case.height, case.width), num_frames=case.frames, top_k=top_k, mode=mode)
    build_s = time.perf_counter() - t0
    s = plan.seq_len
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(1, s, case.heads, case.head_dim, generator=gen).to(device, dtype) for _ in range(3))
    result = {"case": asdict(case), "device": str(device), "seq_len": s, "top_k": top_k, "mode": mode,
              "density": plan.density, "token_density": plan.token_density, "ideal_speedup": 1.0 / plan.density,
              "plan_build_s": build_s, "backends": {}}
    log(f"{case.name}: S={s} tokens, {case.heads} heads x {case.head_dim}, {case.dtype}, top-K={top_k}, "
        f"{mode} mode; density {plan.density:.4f} (ideal speedup {1 / plan.density:.1f}x), "
        f"plan built in {build_s * 1000:.0f} ms")

    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    dense_s = _time(lambda: F.scaled_dot_product_attention(qh, kh, vh), device, repeats)
    result["dense_sdpa_s"] = dense_s
    log(f"  {'dense SDPA (no mask)':<24} {dense_s * 1000:9.1f} ms   1.00x")

    avail = available_backends(device)
    wanted = backends or ("dense", "gather", "flex", "flashinfer")
    for name in wanted:
        why = avail.get(name, "unknown backend")
        if why:
            result["backends"][name] = {"skipped": why}
            log(f"  {name:<24} skipped: {why}")
            continue
        def fn(name=name):
            return sparse_attention(q, k, v, plan, backend=name)

        # The first call plans or compiles (flex, flashinfer): time it apart from the steady state.
        t1 = time.perf_counter()
        fn()
        first = time.perf_counter() - t1
        secs = _time(fn, device, repeats)
        speed = dense_s / secs
        entry = {"seconds": secs, "first_call_s": first, "speedup_vs_dense_sdpa": speed,
                 "fraction_of_ideal": speed * plan.density}
        result["backends"][name] = entry
        label = "dense (masked, reference)" if name == "dense" else name
        log(f"  {label:<24} {secs * 1000:9.1f} ms  {speed:5.2f}x  ({speed * plan.density:.2f} of ideal; "
            f"first call {first:.2f} s)")
    timed = {n: e for n, e in result["backends"].items() if "seconds" in e and n != "dense"}
    if timed:
        best = min(timed, key=lambda n: timed[n]["seconds"])
        result["best_backend"] = best
        result["best_speedup"] = timed[best]["speedup_vs_dense_sdpa"]
        log(f"  best: {best}, {result['best_speedup']:.2f}x faster than dense SDPA")
    return result


def bench_attention(device: str | None = None, top_k: int = 2, mode: str = "exact", repeats: int = 3,
                    cases: tuple[AttentionCase, ...] | None = None, log=print) -> dict:
    """Run the CPU case (or the CUDA cases on a GPU) and return all results."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cases is None:
        cases = CUDA_CASES if dev.type == "cuda" else CPU_CASES
    log(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} CPU threads")
    return {"torch": torch.__version__, "device": str(dev),
            "results": [run_case(c, dev, top_k, mode, repeats, log=log) for c in cases]}
