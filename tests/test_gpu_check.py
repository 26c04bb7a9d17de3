"""scripts/gpu_check.sh without a GPU: its dry run, the no-CUDA answer, the carried wheels and the report."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # the check's modules are scripts, not a package

import gpu_check  # noqa: E402
import gpu_flashinfer_check  # noqa: E402
import gpu_probe  # noqa: E402
import gpu_report  # noqa: E402
import gpu_wheels  # noqa: E402

from iasa_core.bench.attention import AttentionCase, bench_attention  # noqa: E402
from iasa_core.bench.model import CUDA_CASES, ModelCase, bench_model  # noqa: E402
from iasa_core.model.presets import PRESETS  # noqa: E402


def _fake_wheel(folder: Path, dist: str, version: str, tag: str = "py3-none-any") -> Path:
    """A minimal valid wheel holding one empty module, so pip can really install it (offline)."""
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": b"",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items()) + f"{info}/RECORD,,\n"
    path = folder / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", record)
    return path


def _requirements(path: Path, wheels: dict[str, Path]) -> Path:
    path.write_text("# test pins\n" + "".join(f"{spec} --hash=sha256:{gpu_wheels.sha256(w)}\n" for spec, w in wheels.items()))
    return path


def test_the_pinned_wheels_are_what_the_gpu_machine_needs():
    pins = {gpu_wheels.normalize(p.name): p for p in gpu_wheels.read_pins()}
    assert set(pins) == {"flashinfer-python", "apache-tvm-ffi", "diffusers"}
    major, minor, patch = (int(x) for x in pins["flashinfer-python"].version.split(".")[:3])
    assert (major, minor, patch) >= (0, 6, 7)  # the masked / variable-block fixes
    assert all(len(h) == 64 for p in pins.values() for h in p.sha256) and all(p.sha256 for p in pins.values())
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".whl/x.whl"])
    assert ignored.returncode == 0  # wheels never get committed


def test_wheel_tags_are_judged_for_cpython_312_on_x86_64_linux():
    ok = ["flashinfer_python-0.6.7.post3-py3-none-any.whl",
          "apache_tvm_ffi-0.1.9-cp312-abi3-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
          "x-1.0-cp311-abi3-manylinux2014_x86_64.whl", "x-1.0-1build-cp312-cp312-manylinux_2_39_x86_64.whl"]
    bad = ["x-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "x-1.0-cp312-cp312-macosx_11_0_arm64.whl",
           "x-1.0-cp312-cp312-manylinux_2_28_aarch64.whl", "x-1.0-cp312-cp312-manylinux_2_40_x86_64.whl",
           "x-1.0-cp313-abi3-manylinux_2_28_x86_64.whl"]
    assert all(gpu_wheels.fits_gpu_python(gpu_wheels.parse_wheel_name(n)) for n in ok)
    assert not any(gpu_wheels.fits_gpu_python(gpu_wheels.parse_wheel_name(n)) for n in bad)
    with pytest.raises(ValueError, match="not a wheel"):
        gpu_wheels.parse_wheel_name("x-1.0.tar.gz")


def test_check_wheels_reports_missing_wrong_and_stray_files(tmp_path):
    good = _fake_wheel(tmp_path, "good-pkg", "1.0")
    other = _fake_wheel(tmp_path, "other", "2.0")
    stray = _fake_wheel(tmp_path, "other", "1.0")  # an older version left behind: not installed, only carried
    req = tmp_path / "req.txt"
    req.write_text(f"good-pkg==1.0 --hash=sha256:{gpu_wheels.sha256(good)}\nother==2.0 --hash=sha256:{'0' * 64}\n"
                   "missing==3.0\n")
    chosen, problems, extras = gpu_wheels.check_wheels(gpu_wheels.read_pins(req), tmp_path)
    assert chosen == [good, other] and extras == [stray]
    assert any("other==2.0" in p and "hash" in p for p in problems)
    assert any("missing==3.0" in p and "fetch_gpu_wheels.sh" in p for p in problems)
    assert len(problems) == 2
    req.write_text("good-pkg>=1.0\n")
    with pytest.raises(ValueError, match="name==version"):
        gpu_wheels.read_pins(req)
    req.write_text("a==1\nA==2\n")
    with pytest.raises(ValueError, match="listed twice"):
        gpu_wheels.read_pins(req)


def test_steps_cover_the_issue_and_fit_the_budget():
    steps = gpu_check.build_steps()
    assert [s.name for s in steps] == ["imports", "flashinfer_jit", "flashinfer_vs_dense", "pytest_gpu",
                                       "bench_attention", "bench_model"]
    assert all(s.dry_argv and s.min_s <= s.limit_s <= 600 for s in steps)  # 600 s: one device command's limit
    # Every step's minimum fits the budget with a minute left for the CUDA probe and the wheels.
    assert sum(s.min_s for s in steps) + 60 < gpu_check.DEFAULT_BUDGET_S
    pytest_step = next(s for s in steps if s.name == "pytest_gpu")
    assert "tests/test_attention.py" in pytest_step.argv and "tests/test_gpu_check.py" not in pytest_step.argv
    from iasa_core.__main__ import build_parser

    for s in steps:
        for arg in s.argv:
            if arg.startswith("scripts/"):
                assert (ROOT / arg).is_file(), arg
        if s.name.startswith("bench_"):  # the real command lines parse with iasa_core's own parser
            args = build_parser().parse_args([a.format(json="x.json", backend="flashinfer") for a in s.argv[3:]])
            assert args.device == "cuda" and args.what == s.name.removeprefix("bench_")


def test_allot_keeps_time_for_the_steps_after():
    assert gpu_check.allot(240, left_s=400, kept_for_later_s=180) == 220
    assert gpu_check.allot(60, left_s=400, kept_for_later_s=0) == 60
    assert gpu_check.allot(100, left_s=50, kept_for_later_s=100) == 0


def test_parse_pytest_summaries():
    assert gpu_check.parse_pytest(["...", "3 passed, 1 skipped in 2.10s"]) == {"passed": 3, "skipped": 1}
    assert gpu_check.parse_pytest(["4/20 tests collected (16 deselected) in 1.9s"]) == {"collected": 4, "deselected": 16}
    assert gpu_check.parse_pytest(["1 failed, 2 passed, 1 error in 3s", "trailing"]) == {
        "failed": 1, "passed": 2, "errors": 1}
    assert gpu_check.parse_pytest(["nothing here"]) == {}


def test_benches_skip_flashinfer_only_when_its_kernels_did_not_compile(tmp_path, monkeypatch):
    jit_failed = {"name": "flashinfer_jit", "result": {"cases": [{"ok": False}, {"ok": False}]}}
    assert gpu_check.flashinfer_blocked([]) is None  # not tried in this call
    assert "did not compile" in gpu_check.flashinfer_blocked([jit_failed])
    assert gpu_check.flashinfer_blocked([jit_failed, {"name": "flashinfer_vs_dense", "result": {
        "cases": [{"max_abs_err": 1e-3}]}}]) is None  # compiled later, in the check step
    assert gpu_check.flashinfer_blocked([{"name": "flashinfer_jit", "result": {"cases": [{"ok": True}]}}]) is None
    # The blocker turns the backend off the way a missing install does, with the reason in the message.
    from iasa_core.sparse.backends import flashinfer as backend

    monkeypatch.syspath_prepend(str(gpu_check.blocker_dir(tmp_path, "kernels did not compile")))
    for name in [m for m in sys.modules if m == "flashinfer" or m.startswith("flashinfer.")]:
        monkeypatch.delitem(sys.modules, name)
    backend._import_error.cache_clear()
    try:
        assert "kernels did not compile" in backend._import_error()
    finally:
        backend._import_error.cache_clear()


def test_the_float32_reference_is_masked_attention():
    q, k, v = (torch.randn(2, 40, 3, 8) for _ in range(3))
    mask = torch.rand(40, 40) > 0.5
    mask.fill_diagonal_(True)
    want = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_mask=mask).transpose(1, 2)
    got = gpu_flashinfer_check.reference(q, k, v, mask, chunk=16)
    assert (got - want).abs().max() < 1e-5


def test_the_flashinfer_cases_cover_both_modes_and_both_kinds_of_token_count():
    rows, problems = gpu_flashinfer_check.dry_rows(gpu_flashinfer_check.JIT_CASES)
    assert not problems and sorted(r["custom_mask"] for r in rows) == [False, True]
    names = {(c.mode, c.height, c.width, c.frames) for c in gpu_flashinfer_check.CHECK_CASES}
    assert {("exact", 480, 832, 81), ("pooled", 512, 512, 81), ("pooled", 240, 416, 17)} <= names
    assert all(c.heads == 40 for c in gpu_flashinfer_check.CHECK_CASES if c.frames == 81)


def test_bench_model_on_cuda_runs_the_14b_and_13b_configs():
    assert {c.preset for c in CUDA_CASES} == {"wan2.1-i2v-14b", "wan2.1-1.3b"} <= set(PRESETS)
    assert {(c.height, c.width, c.frames) for c in CUDA_CASES} == {(512, 512, 81), (480, 832, 81)}
    assert all(c.dtype == "bfloat16" for c in CUDA_CASES)
    plan = gpu_probe.plan_bench(["bench", "model", "--device", "cuda", "--backend", "flashinfer"])
    assert [c["name"] for c in plan["cases"]] == [c.name for c in CUDA_CASES]
    assert {c["seq_len"] for c in plan["cases"]} == {21504, 32760}


def test_report_reads_the_real_bench_results():
    """The Markdown tables are built from what `bench attention` and `bench model` really return."""
    attention = bench_attention("cpu", repeats=1, cases=(AttentionCase("tiny", 64, 96, 9, 2, 16, "float32"),),
                                log=lambda s: None)
    model = bench_model("cpu", repeats=1, cases=(ModelCase("tiny", "tiny", 32, 32, 5, "float32", 5),), log=lambda s: None)
    check = {"cases": [{"name": "wan-32760-exact", "seq_len": 32760, "heads": 40, "kernel": "fa2", "max_abs_err": 1e-3,
                        "dense_max_abs_err": 8e-4, "ok": True}, {"name": "cut-off", "ok": False, "error": "x"}]}
    summary = {"seconds": 300, "steps": [
        {"name": "cuda", "status": "ok", "seconds": 3, "result": {"cuda": True, "device": "NVIDIA H100", "torch": "2.11"}},
        {"name": "flashinfer_vs_dense", "status": "failed", "seconds": 40, "result": check},
        {"name": "bench_attention", "status": "ok", "seconds": 90, "result": attention},
        {"name": "bench_model", "status": "ok", "seconds": 80, "result": model},
        {"name": "pytest_gpu", "status": "skipped", "seconds": 0, "reason": "out of time"}]}
    text = gpu_report.markdown(summary)
    assert "NVIDIA H100" in text and "wan-32760-exact" in text and "out of time" in text
    assert text.count("| tiny |") == 2  # a row in the attention table and one in the model table
    assert "1/2 cases ok" in text and "failed: cut-off" in text
    assert "tiny: step" in gpu_report.headline(summary["steps"][3])
    # A result cut off mid-way still gives a report.
    partial = {"name": "bench_model", "status": "timeout", "seconds": 80, "result": {"results": [{"case": {}}]}}
    assert "partial result" in gpu_report.headline(partial)
    assert "bench_model: no table, partial result" in gpu_report.markdown({"steps": [partial]})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_without_cuda_the_check_stops_at_once_with_one_line(tmp_path):
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == gpu_check.NO_CUDA_EXIT
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no CUDA: ")
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["status"] == "no_cuda" and [s["name"] for s in summary["steps"]] == ["cuda"]


@pytest.mark.slow
def test_dry_run_checks_wheels_steps_and_json(tmp_path):
    wheel_dir = tmp_path / "whl"
    wheel_dir.mkdir()
    req = _requirements(tmp_path / "req.txt", {"demo-kernels==0.6.7": _fake_wheel(wheel_dir, "demo-kernels", "0.6.7")})
    out = tmp_path / "out"
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(out), "--wheels", str(wheel_dir),
                           "--requirements", str(req)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log"]  # $OUT takes 8 files
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["dry_run"] and summary["status"] == "ok"
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == ["cuda", "wheels", "imports", "flashinfer_jit", "flashinfer_vs_dense", "pytest_gpu",
                           "bench_attention", "bench_model"]
    assert all(s["status"] == "ok" for s in steps.values())
    wheels = steps["wheels"]["result"]
    assert [w["file"] for w in wheels["wheels"]] == ["demo_kernels-0.6.7-py3-none-any.whl"]
    assert (Path(wheels["installed_to"]).name == "site") and wheels["travel_mib"] < 64
    assert steps["pytest_gpu"]["result"]["collected"] >= 4
    assert {c["multiple_of_128"] for c in steps["flashinfer_vs_dense"]["result"]["cases"]} == {True, False}
    assert [c["name"] for c in steps["bench_model"]["result"]["cases"]] == [c.name for c in CUDA_CASES]
    assert "| bench_model | ok |" in summary["markdown"]
    assert "gpu_check --dry-run: 8/8 steps ok" in done.stdout
    # A broken wheel list fails the dry run and says why.
    req.write_text("demo-kernels==9.9\n")
    done = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(out), "--wheels",
                           str(wheel_dir), "--requirements", str(req), "--steps", "imports"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "demo-kernels==9.9: no wheel" in done.stdout
