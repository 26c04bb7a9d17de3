"""One-line summaries and Markdown tables of scripts/gpu_check.py's results (for the log and the README)."""

from __future__ import annotations


def _fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _cuda(r: dict) -> str:
    if not r.get("cuda"):
        return f"no CUDA: {r.get('reason')}"
    return (f"{r.get('device')} ({r.get('capability')}, {r.get('memory_gib')} GiB), driver {r.get('driver')}, "
            f"torch {r.get('torch')} (CUDA {r.get('torch_cuda')}), triton {r.get('triton')}, {r.get('nvcc') or 'no nvcc'}")


def _imports(r: dict) -> str:
    v = r.get("versions", {})
    why = r.get("backends", {}).get("flashinfer", "?")
    errors = "; ".join(f"{m}: {e}" for m, e in r.get("import_errors", {}).items())
    return (f"flashinfer {v.get('flashinfer-python')}, tvm-ffi {v.get('apache-tvm-ffi')}, diffusers "
            f"{v.get('diffusers')}; flashinfer backend {'usable' if r.get('flashinfer_ok') else 'NOT usable: ' + why}"
            + (f"; import errors: {errors}" if errors else ""))


def _jit(r: dict) -> str:
    return "; ".join(f"{c['name']}: {c.get('kernel') or '?'} {'compiled' if c.get('ok') else 'FAILED'} in "
                     f"{c.get('seconds')} s" for c in r.get("cases", []))


def _check(r: dict) -> str:
    rows = [c for c in r.get("cases", []) if "max_abs_err" in c]
    failed = [c["name"] for c in r.get("cases", []) if not c.get("ok")]
    text = f"{sum(1 for c in r.get('cases', []) if c.get('ok'))}/{len(r.get('cases', []))} cases ok"
    if rows:
        worst = max(rows, key=lambda c: c["max_abs_err"])
        text += (f"; worst max |err| {worst['max_abs_err']:.2e} ({worst['name']}; dense bf16 "
                 f"{worst['dense_max_abs_err']:.2e})")
    return text + (f"; failed: {', '.join(failed)}" if failed else "")


def _pytest(r: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in r.items() if n) or "no tests ran"


def _bench_attention(r: dict) -> str:
    parts = []
    for res in r.get("results", []):
        timed = {n: e["speedup_vs_dense_sdpa"] for n, e in res["backends"].items() if "seconds" in e and n != "dense"}
        parts.append(f"{res['case']['name']}: " + ", ".join(f"{n} {x:.2f}x" for n, x in sorted(
            timed.items(), key=lambda kv: -kv[1])) + " vs dense SDPA")
    return "; ".join(parts)


def _bench_model(r: dict) -> str:
    return "; ".join(f"{res['case']['name']}: step {res['step_speedup']:.2f}x ({res['dense_step_s']:.2f} -> "
                     f"{res['iasa_step_s']:.2f} s, {res['backend']}), 4-step {res['student_fps_iasa']:.1f} FPS"
                     for res in r.get("results", []))


def _wheels(r: dict) -> str:
    total = sum(w["mib"] for w in r.get("wheels", []))
    travel = f"; {r['travel_mib']} MiB would travel with the tree" if r.get("travel_mib") is not None else ""
    return (f"{len(r.get('wheels', []))} wheel(s), {total:.1f} MiB: " + ", ".join(w["file"] for w in r.get("wheels", []))
            + travel + "".join(f"; problem: {p}" for p in r.get("problems", [])))


_HEADLINES = {"cuda": _cuda, "wheels": _wheels, "imports": _imports, "flashinfer_jit": _jit, "flashinfer_vs_dense": _check,
              "pytest_gpu": _pytest, "bench_attention": _bench_attention, "bench_model": _bench_model}


def headline(step: dict) -> str:
    """One line on what a step found (or why it has no result)."""
    r = step.get("result")
    if step.get("status") == "skipped":
        return step.get("reason", "skipped")
    if not isinstance(r, dict):
        return step.get("reason") or "no result"
    if r.get("dry_run") and "cases" in r:
        names = [c["name"] for c in r["cases"]]
        return f"{len(names)} case(s) planned: {', '.join(names)}"
    try:
        return _HEADLINES.get(step["name"], lambda _: "")(r)
    except (KeyError, TypeError, ValueError) as exc:  # a partial result (a step cut off) still gets a line
        return f"partial result ({type(exc).__name__}: {exc})"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(summary: dict) -> str:
    """The steps and, where they ran, the benchmark and accuracy tables, in Markdown for the README."""
    steps = {s["name"]: s for s in summary.get("steps", [])}
    cuda = (steps.get("cuda") or {}).get("result") or {}
    where = "a dry run on a CPU" if summary.get("dry_run") else cuda.get("device", "?")
    lines = [f"GPU check ({where}), torch {cuda.get('torch', '?')}, {summary.get('seconds', 0):.0f} s in all:", ""]
    lines += _table(["step", "status", "time", "result"],
                    [[s["name"], s["status"], f"{s.get('seconds', 0):.0f} s", headline(s).replace("|", "/")]
                     for s in summary.get("steps", [])])
    for name, section in (("flashinfer_vs_dense", _check_table), ("bench_attention", _attention_table),
                          ("bench_model", _model_table)):
        result = (steps.get(name) or {}).get("result") or {}
        if result.get("dry_run"):
            continue
        try:
            lines += section(result)
        except (KeyError, TypeError, ValueError) as exc:  # a step cut off mid-way: say so, keep the rest
            lines += ["", f"({name}: no table, partial result: {type(exc).__name__}: {exc})"]
    return "\n".join(lines) + "\n"


def _check_table(check: dict) -> list[str]:
    lines: list[str] = []
    rows = [c for c in check.get("cases", []) if "max_abs_err" in c]
    if rows:
        lines += ["", "FlashInfer vs float32 masked attention (bf16 inputs and outputs):", ""]
        lines += _table(["case", "tokens", "heads", "kernel", "max abs err", "dense SDPA bf16", "ok"],
                        [[c["name"], str(c["seq_len"]), str(c["heads"]), str(c.get("kernel")),
                          f"{c['max_abs_err']:.2e}", f"{c['dense_max_abs_err']:.2e}", "yes" if c["ok"] else "NO"]
                         for c in rows])
    return lines


def _attention_table(attn: dict) -> list[str]:
    lines: list[str] = []
    if attn.get("results"):
        names = ["dense", "gather", "flex", "flashinfer"]
        lines += ["", "`bench attention` (best of the repeats; speed-up over dense SDPA without a mask):", ""]
        body = []
        for res in attn["results"]:
            cells = [res["case"]["name"], str(res["seq_len"]), f"{res['density']:.3f}", _fmt_ms(res["dense_sdpa_s"])]
            for n in names:
                e = res["backends"].get(n, {})
                cells.append(f"{_fmt_ms(e['seconds'])} ({e['speedup_vs_dense_sdpa']:.2f}x)" if "seconds" in e
                             else "skipped")
            body.append(cells)
        lines += _table(["case", "tokens", "density", "dense SDPA", "dense (masked)", "gather", "flex",
                         "flashinfer"], body)
    return lines


def _model_table(model: dict) -> list[str]:
    lines: list[str] = []
    if model.get("results"):
        lines += ["", "`bench model` (one DiT step, random bf16 weights):", ""]
        lines += _table(
            ["case", "tokens", "dense step", "IASA step", "speed-up", "attention alone", "4-step FPS dense / IASA",
             "peak GiB dense / IASA"],
            [[r["case"]["name"], str(r["seq_len"]), f"{r['dense_step_s']:.2f} s",
              f"{r['iasa_step_s']:.2f} s ({r['backend']})", f"{r['step_speedup']:.2f}x", f"{r['attention_speedup']:.2f}x",
              f"{r['student_fps_dense']:.1f} / {r['student_fps_iasa']:.1f}",
              f"{r['peak_memory_mb_dense'] / 1024:.1f} / {r['peak_memory_mb_iasa'] / 1024:.1f}"]
             for r in model["results"]])
    return lines
