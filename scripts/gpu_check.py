#!/usr/bin/env python3
"""One-call GPU check: install the carried FlashInfer wheels, then the CUDA tests, FlashInfer against the
dense reference, `bench attention` and `bench model`, each with its own time limit inside one budget.

Run it on the GPU machine from the repository root as ``bash scripts/gpu_check.sh`` (see the README's GPU
section). It writes gpu_check.json (rewritten after every step) and gpu_check.log to $OUT (or
--out). Without CUDA it stops at once with one "no CUDA" line; ``--dry-run`` checks the carried wheels (an
offline install for CPython 3.12), the step list (each step's CPU stand-in) and the JSON writer on a CPU.
Exit status: 0 all steps ok, 1 some step failed, 3 no CUDA.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import gpu_report
import gpu_wheels

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_S = 390  # 6.5 minutes: with the machine's start and the transfers, under 8 minutes of device time
NO_CUDA_EXIT = 3
SITE_DIR = Path(tempfile.gettempdir()) / "iasa_gpu_site"  # where the carried wheels are installed
PY = "{py}"  # filled in with this interpreter (on the GPU machine: the python3 that holds PyTorch)


@dataclass(frozen=True)
class Step:
    """One command of the check; ``{py}``, ``{json}`` and ``{backend}`` in ``argv`` are filled in at run time."""

    name: str
    what: str
    argv: tuple[str, ...]
    limit_s: int  # the most this step may run
    min_s: int  # kept free for this step while the steps before it run
    dry_argv: tuple[str, ...] | None = None  # its CPU stand-in under --dry-run; None: this step is GPU-only


def gpu_test_files(root: Path = ROOT) -> list[str]:
    """Test files holding GPU-marked tests; only these are collected (others import packages the GPU image lacks)."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                  if "@pytest.mark.gpu" in p.read_text(errors="replace"))


def _bench_plan(argv: tuple[str, ...]) -> tuple[str, ...]:
    """A bench command's dry-run stand-in: its arguments parsed by iasa_core's parser, its cases listed."""
    return (PY, "scripts/gpu_probe.py", "bench-plan", "--json", "{json}", "--", *argv[3:])


def build_steps(root: Path = ROOT) -> list[Step]:
    """Every step after the CUDA probe and the wheel install, in the order they run."""
    tests = tuple(gpu_test_files(root))
    attention = (PY, "-m", "iasa_core", "bench", "attention", "--device", "cuda", "--repeats", "3", "--json", "{json}")
    model = (PY, "-m", "iasa_core", "bench", "model", "--device", "cuda", "--backend", "{backend}", "--repeats", "1",
             "--json", "{json}")
    pytest = (PY, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider", *tests)
    fi = (PY, "scripts/gpu_flashinfer_check.py")
    return [
        Step("imports", "package versions; flashinfer, diffusers and every module of iasa_core's CLI import",
             (PY, "scripts/gpu_probe.py", "imports", "--require-flashinfer", "--json", "{json}"), 60, 15,
             (PY, "scripts/gpu_probe.py", "imports", "--json", "{json}")),
        Step("flashinfer_jit", "FlashInfer's kernels compiled by nvcc on first use: fa2 (masked) and the unmasked "
             "family, side by side", (*fi, "jit", "--json", "{json}"), 240, 60, (*fi, "jit", "--dry-run", "--json", "{json}")),
        Step("flashinfer_vs_dense", "FlashInfer vs the dense reference in bf16: exact and pooled, token counts that "
             "are and are not multiples of 128, up to Wan2.1-14B size", (*fi, "check", "--json", "{json}"), 120, 30,
             (*fi, "check", "--dry-run", "--json", "{json}")),
        Step("pytest_gpu", "the GPU-marked tests (pytest -m gpu)", pytest, 90, 30, (*pytest, "--collect-only")),
        Step("bench_attention", "bench attention on CUDA: dense SDPA, masked dense, gather, compiled flex and "
             "flashinfer at 512x512x81 and 480x832x81, 40 heads x 128, bf16", attention, 180, 60, _bench_plan(attention)),
        Step("bench_model", "bench model on CUDA: one DiT step dense vs IASA, Wan2.1-14B and 1.3B configs with "
             "random bf16 weights, at 512x512x81 and 480x832x81", model, 180, 60, _bench_plan(model)),
    ]


def allot(limit_s: int, left_s: float, kept_for_later_s: int) -> int:
    """Seconds a step may run: its own limit, but never the time kept for the steps after it."""
    return max(0, int(min(limit_s, left_s - kept_for_later_s)))


def parse_pytest(lines: list[str]) -> dict:
    """Counts from pytest's summary line ("3 passed, 1 skipped in 2.1s", "4/20 tests collected ...")."""
    counts: dict[str, int] = {}
    for line in reversed(lines):
        found = re.findall(r"(\d+)(?:/\d+)? (passed|failed|skipped|errors?|xfailed|xpassed|deselected|tests? collected)",
                           line)
        if found:
            for n, kind in found:
                kind = "collected" if "collected" in kind else ("errors" if kind.startswith("error") else kind)
                counts[kind] = int(n)
            break
    return counts


def _kill_group(proc: subprocess.Popen) -> None:
    """End a timed-out step with everything it started (nvcc, ninja, compile workers): its own process group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # a moment to clean up first
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the group still holds, children included
    except ProcessLookupError:
        pass
    proc.wait()


def run_command(argv: list[str], env: dict, timeout_s: float, log: TextIO, echo: bool = True
                ) -> tuple[int | None, float, list[str]]:
    """Run ``argv`` in the repository root with a wall-clock limit, its output copied to the log (and stdout).

    Returns (exit status, or None when it ran out of time; seconds; its last 40 lines).
    """
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1, start_new_session=True)
    except OSError as exc:
        log.write(f"cannot start {argv[0]}: {exc}\n")
        return 127, time.monotonic() - t0, [f"cannot start {argv[0]}: {exc}"]
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def pump() -> None:
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        log.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc: int | None = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        rc = None
    reader.join(timeout=10)
    return rc, time.monotonic() - t0, list(tail)


class Check:
    """The run: its steps' records, the log, and the JSON rewritten after each step."""

    def __init__(self, out_dir: Path, dry_run: bool, budget_s: int) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.json_path, self.log_path = out_dir / "gpu_check.json", out_dir / "gpu_check.log"
        self.log = open(self.log_path, "w", encoding="utf-8")
        self.work = Path(tempfile.mkdtemp(prefix="iasa_gpu_check_"))  # step JSONs: $OUT takes 8 files at most
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        self.summary: dict = {
            "check": "scripts/gpu_check.py", "schema": 1, "dry_run": dry_run,
            "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "python": sys.executable, "git_commit": _git_commit(), "budget_s": budget_s,
            "status": "running", "steps": []}

    def left_s(self) -> float:
        """Seconds of the budget still unspent."""
        return self.budget_s - (time.monotonic() - self.t0)

    def say(self, text: str, echo: bool = True) -> None:
        """A line in the log (and on stdout)."""
        self.log.write(text + "\n")
        self.log.flush()
        if echo:
            print(text, flush=True)

    def record(self, step: dict) -> None:
        """Add a step's record and rewrite the JSON, so a cut-off run still leaves everything before it."""
        step["headline"] = gpu_report.headline(step)
        self.summary["steps"].append(step)
        self.write()

    def close(self) -> None:
        """Close the log and drop the steps' scratch folder."""
        self.log.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def write(self) -> None:
        """Write the JSON atomically."""
        self.summary["seconds"] = round(time.monotonic() - self.t0, 1)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.summary, indent=1))
        tmp.replace(self.json_path)

    def run_step(self, step: Step, argv: tuple[str, ...], env: dict, limit_s: int, ctx: dict,
                 echo: bool = True) -> dict:
        """Run one step's command within ``limit_s`` and turn what it left into a record."""
        json_path = self.work / f"{step.name}.json"
        cmd = [a.format(py=sys.executable, json=json_path, **ctx) for a in argv]
        self.say(f"\n== {step.name} (limit {limit_s} s): {step.what}\n$ {shlex.join(cmd)}", echo)
        rc, seconds, tail = run_command(cmd, env, limit_s, self.log, echo)
        result: dict | None = None
        if json_path.is_file():
            try:
                result = json.loads(json_path.read_text())
            except ValueError:
                result = None  # cut off mid-write: the log has its output
        if step.name == "pytest_gpu":
            result = parse_pytest(tail)
        status = "timeout" if rc is None else ("ok" if rc == 0 else "failed")
        if step.name == "pytest_gpu" and status == "ok":
            # A skipped GPU test (flashinfer missing, say) fails this check; a dry run must find the tests.
            if "--collect-only" in cmd:
                found = bool(result.get("collected"))
            else:
                found = bool(result.get("passed")) and not result.get("skipped")
            status = "ok" if found else "failed"
        record = {"name": step.name, "what": step.what, "command": shlex.join(cmd), "limit_s": limit_s,
                  "status": status, "rc": rc, "seconds": round(seconds, 1), "result": result}
        if status != "ok":
            record["tail"] = tail[-15:]
            record["reason"] = (f"stopped at its {limit_s} s limit" if rc is None else f"exit status {rc}") + (
                f": {tail[-1]}" if tail else "")
        self.record(record)
        self.say(f"== {step.name}: {status} in {seconds:.0f} s; {record['headline']}", echo)
        return record


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def flashinfer_blocked(records: list[dict]) -> str | None:
    """Why the bench steps should run without FlashInfer, or None: they do when its kernels failed to compile here.

    Otherwise `bench attention` would stop at its FlashInfer row (losing the other backends' numbers) and
    `bench model` would spend its time limit compiling again.
    """
    ran = [r for r in records if r["name"] in ("flashinfer_jit", "flashinfer_vs_dense")]
    if not ran:
        return None  # not tried in this call (--steps): let the benches try
    for r in ran:
        for case in (r.get("result") or {}).get("cases") or []:
            if (r["name"] == "flashinfer_jit" and case.get("ok")) or "max_abs_err" in case:
                return None  # some kernels compiled and ran
    return "FlashInfer's kernels did not compile in this check (see the flashinfer_jit step)"


def blocker_dir(work: Path, reason: str) -> Path:
    """A folder whose `flashinfer` package refuses to import with ``reason``; first on PYTHONPATH, it turns
    the flashinfer backend off the way a missing install would, so the benches skip it and say why."""
    package = work / "no_flashinfer" / "flashinfer"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f"raise ImportError({reason!r})\n")
    return package.parent


def step_env(dry_run: bool) -> dict:
    """The steps' environment: the installed wheels and the repository importable, output unbuffered."""
    env = dict(os.environ)
    # The cp312 install cannot load on another Python, so a dry run imports only what is installed here.
    paths = ([] if dry_run else [str(SITE_DIR)]) + [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def install_wheels(check: Check, requirements: Path, wheel_dir: Path, dry_run: bool) -> dict:
    """Check the carried wheels against the pinned list and install them (--dry-run: for CPython 3.12, offline)."""
    t0 = time.monotonic()
    record: dict = {"name": "wheels", "what": f"check {wheel_dir.name}/ against {requirements.name}; pip install "
                    "--no-deps into a folder on PYTHONPATH", "limit_s": 90}
    check.say(f"\n== wheels: {record['what']}")
    try:
        chosen, problems, extras = gpu_wheels.check_wheels(gpu_wheels.read_pins(requirements), wheel_dir)
    except (OSError, ValueError) as exc:
        chosen, problems, extras = [], [str(exc)], []
    travel = gpu_wheels.travel_bytes(ROOT, chosen + extras) if dry_run else None
    if travel is not None and travel > gpu_wheels.TRAVEL_LIMIT:
        problems.append(f"{travel / gpu_wheels.MIB:.1f} MiB would travel, over the device tool's 64 MiB")
    record["result"] = {"wheels": [{"file": f.name, "mib": round(f.stat().st_size / gpu_wheels.MIB, 2)} for f in chosen],
                        "not_listed": [f.name for f in extras], "problems": problems,
                        "travel_mib": None if travel is None else round(travel / gpu_wheels.MIB, 1)}
    for line in [f"  {w['file']} ({w['mib']} MiB)" for w in record["result"]["wheels"]] + [
            f"  problem: {p}" for p in problems]:
        check.say(line)
    status, tail = "failed", []
    if not problems:
        target = check.work / "site" if dry_run else SITE_DIR
        shutil.rmtree(target, ignore_errors=True)  # a clean install, whatever an earlier call left
        cmd = gpu_wheels.install_command(chosen, target, sys.executable, for_gpu_python=dry_run)
        check.say(f"$ {shlex.join(cmd)}")
        rc, _, tail = run_command(cmd, dict(os.environ), record["limit_s"], check.log)
        status = "ok" if rc == 0 else ("timeout" if rc is None else "failed")
        record["result"]["installed_to"] = str(target)
    record.update(status=status, seconds=round(time.monotonic() - t0, 1))
    if status != "ok":
        record["reason"] = "; ".join(problems) or (tail[-1] if tail else "pip failed")
        record["tail"] = tail[-15:]
    check.record(record)
    check.say(f"== wheels: {status}")
    return record


def main(argv: list[str] | None = None) -> int:
    """Run the check (or its dry run); see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="check wheels, steps and JSON writer on a CPU")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "out" / "gpu_check"),
                        help="folder for gpu_check.json and gpu_check.log (default $OUT, else out/gpu_check)")
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET_S,
                        help=f"seconds for the whole check (default {DEFAULT_BUDGET_S})")
    parser.add_argument("--steps", help="comma-separated subset of the steps to run (default all)")
    parser.add_argument("--requirements", type=Path, default=gpu_wheels.REQUIREMENTS)
    parser.add_argument("--wheels", type=Path, default=gpu_wheels.WHEEL_DIR, help="the carried wheels (default .whl/)")
    args = parser.parse_args(argv)
    steps = build_steps()
    if args.steps:
        wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {s.name for s in steps})
        if unknown:
            parser.error(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(s.name for s in steps)}")
        steps = [s for s in steps if s.name in wanted]

    check = Check(args.out, args.dry_run, args.budget)
    try:
        return run_all(check, steps, args)
    finally:
        check.close()


def run_all(check: Check, steps: list[Step], args: argparse.Namespace) -> int:
    """The CUDA probe (which ends a run without CUDA at once), the wheels, then every step in turn."""
    env = step_env(args.dry_run)
    probe = Step("cuda", "the GPU, driver, torch, CUDA and nvcc", (PY, "scripts/gpu_probe.py", "cuda", "--require",
                                                                   "--json", "{json}"), 60, 0)
    if args.dry_run:
        check.say(f"gpu_check --dry-run: the CUDA probe, the wheels and {len(steps)} step(s), each as its CPU "
                  f"stand-in (budget on a GPU: {args.budget} s)")
        check.run_step(probe, tuple(a for a in probe.argv if a != "--require"), env, probe.limit_s, {})
    else:
        # Quietly: on a machine without CUDA the whole answer is one line.
        rec = check.run_step(probe, probe.argv, env, probe.limit_s, {}, echo=False)
        if rec["status"] != "ok":
            reason = (rec.get("result") or {}).get("reason") or rec.get("reason")
            check.summary["status"] = "no_cuda"
            check.write()
            print(f"gpu_check: no CUDA: {reason}; nothing was run (on a CPU, --dry-run checks the script)",
                  file=sys.stderr)
            return NO_CUDA_EXIT
        check.say(f"gpu_check on {rec['headline']}")
        check.say(f"budget {args.budget} s; writing {check.json_path} and {check.log_path}")

    install_wheels(check, args.requirements, args.wheels, args.dry_run)
    flashinfer_usable: bool | None = None  # known once the imports step has run
    for i, step in enumerate(steps):
        argv_used = step.dry_argv if args.dry_run else step.argv
        kept = sum(s.min_s for s in steps[i + 1:])
        limit = allot(step.limit_s, check.left_s(), kept)
        if argv_used is None or limit < 10:
            check.record({"name": step.name, "what": step.what, "status": "skipped", "seconds": 0,
                          "reason": "no CPU stand-in" if argv_used is None else
                          f"out of time ({check.left_s():.0f} s left, {kept} s kept for later steps)"})
            continue
        env_here = env
        blocked = None
        if step.name.startswith("bench_") and not args.dry_run:
            blocked = flashinfer_blocked(check.summary["steps"])
        if blocked:
            check.say(f"\n{step.name} runs without FlashInfer: {blocked}")
            env_here = {**env, "PYTHONPATH": os.pathsep.join([str(blocker_dir(check.work, blocked)), env["PYTHONPATH"]])}
        # bench model asks for flashinfer by name when it is usable, so it cannot fall back unnoticed.
        usable = flashinfer_usable and not blocked
        ctx = {"backend": "auto" if flashinfer_usable is None and not blocked else ("flashinfer" if usable else "gather")}
        rec = check.run_step(step, argv_used, env_here, limit, ctx)
        if step.name == "imports":
            flashinfer_usable = bool((rec.get("result") or {}).get("flashinfer_ok"))

    records = check.summary["steps"]
    failed = [r["name"] for r in records if r["status"] != "ok"]
    check.summary["status"] = "ok" if not failed else "failed"
    check.summary["markdown"] = gpu_report.markdown(check.summary)
    check.write()
    check.say("\n" + check.summary["markdown"])
    check.say(f"gpu_check{' --dry-run' if args.dry_run else ''}: {len(records) - len(failed)}/{len(records)} steps ok"
              f" in {check.summary['seconds']:.0f} s (budget {args.budget} s)"
              + (f"; not ok: {', '.join(failed)}" if failed else "") + f"; wrote {check.json_path} and {check.log_path}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
