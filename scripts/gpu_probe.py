#!/usr/bin/env python3
"""Small probes for scripts/gpu_check.py, each printing and writing one JSON object.

    gpu_probe.py cuda [--require]           the GPU, driver, torch, CUDA and nvcc (exit 3 without CUDA)
    gpu_probe.py imports [--require-flashinfer]   package versions; flashinfer, diffusers and iasa_core import
    gpu_probe.py bench-plan -- bench ARGS   parse a `python -m iasa_core bench` command line and list its CUDA
                                            cases without running them (the bench steps' stand-in in --dry-run)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

NO_CUDA_EXIT = 3
PACKAGES = ("torch", "triton", "flashinfer-python", "apache-tvm-ffi", "diffusers", "transformers",
            "huggingface-hub", "safetensors", "numpy", "ninja", "nvidia-ml-py", "pytest")


def _command_output(argv: list[str], timeout: float = 30) -> str | None:
    """The stripped stdout of a short command, or None when it is missing or fails."""
    if not shutil.which(argv[0]):
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def probe_cuda() -> dict:
    """What the check runs on; ``cuda`` False with a ``reason`` when there is no usable CUDA device."""
    info: dict = {"python": platform.python_version(), "host": platform.node()}
    nvcc = _command_output(["nvcc", "--version"])
    info["nvcc"] = nvcc.splitlines()[-1] if nvcc else None
    info["driver"] = _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    try:
        import torch
    except Exception as exc:  # a broken install fails with more than ImportError
        return {**info, "cuda": False, "reason": f"{sys.executable} cannot import torch ({exc})"}
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        return {**info, "cuda": False, "reason": f"torch {torch.__version__} ({build}) sees no CUDA device"}
    props = torch.cuda.get_device_properties(0)
    info.update(cuda=True, device=props.name, capability=f"sm_{props.major}{props.minor}",
                memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                device_count=torch.cuda.device_count())
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception as exc:
        info["triton"] = f"not importable ({exc})"
    return info


def probe_imports() -> dict:
    """Package versions and where they load from; whether flashinfer and iasa_core's bench modules import."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    out: dict = {"versions": versions, "import_errors": {}}
    for module in ("flashinfer.sparse", "diffusers", "iasa_core.bench.model", "iasa_core.bench.attention"):
        t0 = time.perf_counter()
        try:
            loaded = __import__(module, fromlist=["_"])
        except Exception as exc:
            out["import_errors"][module] = f"{type(exc).__name__}: {exc}"
            continue
        out.setdefault("import_seconds", {})[module] = round(time.perf_counter() - t0, 2)
        out.setdefault("paths", {})[module] = str(Path(loaded.__file__).parent)
    try:  # the CLI's parser imports every sub-command's module: one missing package breaks `python -m iasa_core`
        from iasa_core.__main__ import build_parser

        build_parser()
    except Exception as exc:
        out["import_errors"]["iasa_core.__main__.build_parser"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        from iasa_core.sparse.attention import available_backends

        device = "cuda" if torch.cuda.is_available() else "cpu"
        out["backends"] = {"device": device, **available_backends(device)}
        out["flashinfer_ok"] = out["backends"]["flashinfer"] == ""
    except Exception as exc:
        out["import_errors"]["iasa_core.sparse.attention"] = f"{type(exc).__name__}: {exc}"
        out["flashinfer_ok"] = False
    return out


def plan_bench(bench_argv: list[str]) -> dict:
    """Parse ``bench ...`` with iasa_core's own parser and list the cases it runs on CUDA, with their tokens."""
    from dataclasses import asdict

    from iasa_core.__main__ import build_parser
    from iasa_core.bench import attention, model
    from iasa_core.sparse.grid import TokenGrid

    args = build_parser().parse_args(bench_argv)  # exits 2 with argparse's message on a bad flag
    if getattr(args, "what", None) not in ("attention", "model"):
        raise SystemExit(f"bench-plan takes `bench attention ...` or `bench model ...`, got {bench_argv}")
    cases = (attention if args.what == "attention" else model).CUDA_CASES
    rows = [{**asdict(c), "seq_len": TokenGrid(c.frames, c.height, c.width).seq_len} for c in cases]
    for r in rows:
        print(f"  {r['name']}: {r['seq_len']} tokens, {r['dtype']}")
    return {"dry_run": True, "what": args.what, "argv": bench_argv, "cases": rows}


def main(argv: list[str] | None = None) -> int:
    """Run one probe, print its JSON and write it to --json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=("cuda", "imports", "bench-plan"))
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--require", action="store_true", help="cuda: exit 3 with one line when there is no CUDA")
    parser.add_argument("--require-flashinfer", action="store_true", help="imports: exit 1 unless flashinfer runs")
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `--` is the bench command line, kept away from this parser.
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    bench_argv = argv[split + 1:]
    if args.probe == "cuda":
        result = probe_cuda()
        failed = NO_CUDA_EXIT if args.require and not result["cuda"] else 0
    elif args.probe == "imports":
        result = probe_imports()
        failed = 1 if args.require_flashinfer and not result["flashinfer_ok"] else 0
    else:
        result = plan_bench(bench_argv)
        failed = 0
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)  # the check's log keeps its output short: the JSON goes to the file only
    else:
        print(text)
    if failed == NO_CUDA_EXIT:
        print(f"no CUDA: {result['reason']}", file=sys.stderr)
    return failed


if __name__ == "__main__":
    sys.exit(main())
