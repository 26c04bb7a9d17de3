#!/usr/bin/env python3
"""FlashInfer backend on a GPU: first-use kernel compile times, then bf16 outputs against a dense reference.

    gpu_flashinfer_check.py jit    compile FlashInfer's two kernel families the backend uses, side by side:
                                   fa2 (a per-token mask: exact mode, or keys padded to whole blocks) and the
                                   unmasked one `backend="auto"` picks (fa3 on Hopper)
    gpu_flashinfer_check.py check  exact and pooled plans, token counts that are and are not multiples of
                                   128, small and Wan2.1-14B sized (40 heads x 128): FlashInfer and the dense
                                   SDPA backend in bf16 against float32 masked attention computed here

``--dry-run`` builds the same plans on the CPU and checks that the cases cover what they must. Results go to
stdout and, after every case so a timeout keeps what finished, to ``--json``. Exit 1 when a case fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sparse import build_plan
from iasa_core.sparse.attention import sparse_attention
from iasa_core.sparse.backends.dense import token_mask_on
from iasa_core.sparse.backends.flashinfer import bsr_mask
from iasa_core.sparse.plan import SparsePlan

BLOCK = 128
ABS_TOL = 2e-2  # as tests/test_attention.py's bf16 GPU test
# FlashInfer may be a little less exact than SDPA in bf16, but a wrong mask costs far more than this.
DENSE_FACTOR, DENSE_SLACK = 4.0, 1e-3


@dataclass(frozen=True)
class Case:
    """One plan and the q/k/v it is checked with."""

    name: str
    height: int
    width: int
    frames: int
    mode: str
    heads: int
    batch: int

    def plan(self) -> SparsePlan:
        """The case's sparse plan (synthetic talking poses, top-K 2, 128-token blocks)."""
        kp = synthetic_keypoints(self.frames, self.height, self.width, seed=1)
        return build_plan(kp, (self.height, self.width), num_frames=self.frames, top_k=2, mode=self.mode)


# S = 6 x 16 x 16 = 1536 and 21 x 32 x 32 = 21504 are multiples of 128; 5 x 15 x 26 = 1950 and
# 21 x 30 x 52 = 32760 are not (their last block is padded, which always needs a mask).
_SHAPES = (("small-1950", 240, 416, 17, 8, 2), ("small-1536", 256, 256, 21, 8, 2),
           ("wan-32760", 480, 832, 81, 40, 1), ("wan-21504", 512, 512, 81, 40, 1))
CHECK_CASES = tuple(Case(f"{name}-{mode}", h, w, f, mode, heads, batch)
                    for mode in ("exact", "pooled") for name, h, w, f, heads, batch in _SHAPES)
# One plan per kernel family: exact with padding (a mask: fa2) and pooled on whole blocks (no mask).
JIT_CASES = (Case("masked-1950-exact", 240, 416, 17, "exact", 8, 1),
             Case("unmasked-1536-pooled", 256, 256, 21, "pooled", 8, 1))


def needs_mask(plan: SparsePlan) -> bool:
    """Whether the backend hands FlashInfer a per-token mask for this plan (which rules out fa3)."""
    return bsr_mask(plan, torch.device("cpu")) is not None


def describe(case: Case, plan: SparsePlan) -> dict:
    """The case's shape and plan facts, as recorded in the JSON."""
    return {**asdict(case), "seq_len": plan.seq_len, "multiple_of_128": plan.seq_len % BLOCK == 0,
            "density": round(plan.density, 4), "custom_mask": needs_mask(plan)}


def _qkv(case: Case, seq_len: int, device: str) -> list[torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    return [torch.randn(case.batch, seq_len, case.heads, 128, generator=gen).to(device, torch.bfloat16)
            for _ in range(3)]


def kernel_backend(plan: SparsePlan) -> str | None:
    """Which FlashInfer kernels the cached wrapper planned with (fa2 / fa3), as FlashInfer records it."""
    wrappers = [v for k, v in plan._cache.items() if isinstance(k, tuple) and k[0] == "flashinfer"]
    return getattr(wrappers[0], "_backend", None) if wrappers else None


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Masked softmax attention in float32, a chunk of queries at a time so the scores never exist whole."""
    kf, vf = (t.float().transpose(1, 2) for t in (k, v))
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    scale = q.shape[-1] ** -0.5
    for s in range(0, q.shape[1], chunk):
        qf = q[:, s:s + chunk].float().transpose(1, 2)
        scores = (qf @ kf.transpose(-1, -2)) * scale
        scores.masked_fill_(~mask[s:s + chunk], float("-inf"))
        out[:, s:s + chunk] = (scores.softmax(-1) @ vf).transpose(1, 2)
    return out


def check_case(case: Case, plan: SparsePlan, row: dict) -> dict:
    """FlashInfer and dense SDPA in bf16 against the float32 reference, for one case, on CUDA."""
    row = dict(row)
    q, k, v = _qkv(case, plan.seq_len, "cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = sparse_attention(q, k, v, plan, backend="flashinfer")
    torch.cuda.synchronize()
    row["first_call_s"] = round(time.perf_counter() - t0, 3)
    row["kernel"] = kernel_backend(plan)
    again = sparse_attention(q, k, v, plan, backend="flashinfer")  # the planned wrapper, reused
    dense = sparse_attention(q, k, v, plan, backend="dense")
    ref = reference(q, k, v, token_mask_on(plan, q.device))
    err, dense_err = (out.float() - ref).abs(), (dense.float() - ref).abs()
    row.update(max_abs_err=err.max().item(), mean_abs_err=err.mean().item(),
               dense_max_abs_err=dense_err.max().item(), dense_mean_abs_err=dense_err.mean().item(),
               vs_dense_max=(out.float() - dense.float()).abs().max().item(),
               repeat_equal=bool(torch.equal(out, again)), dtype=str(out.dtype).removeprefix("torch."))
    bound = min(ABS_TOL, DENSE_FACTOR * row["dense_max_abs_err"] + DENSE_SLACK)
    row["ok"] = (row["max_abs_err"] <= bound and row["repeat_equal"] and out.dtype == torch.bfloat16
                 and bool(torch.isfinite(out).all()))
    row["bound"] = bound
    return row


def warm_case(case: Case) -> dict:
    """Plan one FlashInfer wrapper (which JIT-compiles its kernels on first use) and time it."""
    plan = case.plan()
    row = describe(case, plan)
    q, k, v = _qkv(case, plan.seq_len, "cuda")
    t0 = time.perf_counter()
    try:
        sparse_attention(q, k, v, plan, backend="flashinfer")
        torch.cuda.synchronize()
        row.update(ok=True, kernel=kernel_backend(plan))
    except Exception as exc:  # a failed compile: record it and let the other family finish
        row.update(ok=False, error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:2000]}")
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def dry_rows(cases: tuple[Case, ...]) -> tuple[list[dict], list[str]]:
    """The cases' plans built on the CPU, and what the case list fails to cover."""
    rows = [describe(c, c.plan()) for c in cases]
    problems = []
    if cases is JIT_CASES and sorted(r["custom_mask"] for r in rows) != [False, True]:
        problems.append("the JIT cases must be one masked and one unmasked plan")
    if cases is CHECK_CASES:
        for mode in ("exact", "pooled"):
            aligned = {r["multiple_of_128"] for r in rows if r["mode"] == mode}
            if aligned != {True, False}:
                problems.append(f"{mode}: token counts must include multiples of 128 and others")
    return rows, problems


def _emit(path: Path | None, payload: dict) -> None:
    if path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Run the JIT warm-up or the correctness check (or their CPU dry runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("jit", "check"))
    parser.add_argument("--json", type=Path, help="write the results here (rewritten after every case)")
    parser.add_argument("--dry-run", action="store_true", help="build the plans on the CPU; no CUDA needed")
    args = parser.parse_args(argv)
    cases = JIT_CASES if args.phase == "jit" else CHECK_CASES
    payload: dict = {"phase": args.phase, "dry_run": args.dry_run, "cases": []}
    if args.dry_run:
        payload["cases"], payload["problems"] = dry_rows(cases)
        for r in payload["cases"]:
            print(f"{r['name']}: S={r['seq_len']} (multiple of 128: {r['multiple_of_128']}), {r['heads']} heads, "
                  f"density {r['density']}, custom mask: {r['custom_mask']}")
        for problem in payload["problems"]:
            print(f"problem: {problem}")
        payload["ok"] = not payload["problems"]
        _emit(args.json, payload)
        return 0 if payload["ok"] else 1
    if not torch.cuda.is_available():
        print("no CUDA: the FlashInfer check needs an NVIDIA GPU (use --dry-run here)", file=sys.stderr)
        return 3
    if args.phase == "jit":
        # The two families compile at once: nvcc runs in subprocesses, so threads overlap them.
        with ThreadPoolExecutor(len(cases)) as pool:
            for done in as_completed([pool.submit(warm_case, c) for c in cases]):
                row = done.result()
                payload["cases"].append(row)
                print(f"{row['name']}: {'ok' if row['ok'] else 'FAILED'} in {row['seconds']} s, kernel "
                      f"{row.get('kernel')}, custom mask {row['custom_mask']}" + (f"; {row['error']}" if not row["ok"] else ""))
                _emit(args.json, payload)
    else:
        planned = [(case, plan, describe(case, plan)) for case, plan in ((c, c.plan()) for c in cases)]
        # Masked cases first: they share the fa2 kernels, so a slow unmasked compile cannot hold them up.
        for case, plan, row in sorted(planned, key=lambda item: not item[2]["custom_mask"]):
            try:
                row = check_case(case, plan, row)
            except Exception as exc:
                row = {**row, "ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:2000]}"}
            payload["cases"].append(row)
            if "error" in row:
                print(f"{row['name']}: FAILED: {row['error']}")
            else:
                print(f"{row['name']}: S={row['seq_len']} kernel {row['kernel']}: max |err| {row['max_abs_err']:.2e} "
                      f"(dense bf16 {row['dense_max_abs_err']:.2e}, bound {row['bound']:.2e}), first call "
                      f"{row['first_call_s']} s -> {'ok' if row['ok'] else 'FAILED'}")
            _emit(args.json, payload)
            torch.cuda.empty_cache()
    payload["ok"] = all(r["ok"] for r in payload["cases"])
    _emit(args.json, payload)
    return 0 if payload["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
