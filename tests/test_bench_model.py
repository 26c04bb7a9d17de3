"""`bench model` runs end to end on a tiny case and reports every number the issue asks for."""

from __future__ import annotations

import json

from iasa_core.__main__ import main
from iasa_core.bench.model import ModelCase, bench_model


def test_bench_model_tiny_case_reports_everything():
    lines = []
    out = bench_model("cpu", repeats=1, cases=(ModelCase("tiny-64x96x9", "tiny", 64, 96, 9, "float32", 5),),
                      log=lines.append)
    r = out["results"][0]
    assert r["seq_len"] == 3 * 4 * 6 and r["backend"] == "gather"
    for key in ("dense_step_s", "iasa_step_s", "step_speedup", "attention_share_dense", "attention_share_iasa",
                "peak_memory_mb_dense", "peak_memory_mb_iasa", "student_fps_dense", "student_fps_iasa"):
        assert r[key] > 0, key
    assert r["student_fps_iasa"] == 9 / (4 * r["iasa_step_s"])
    assert any("4-step student" in line for line in lines)


def test_bench_cli_rejects_unknown(capsys):
    try:
        main(["bench", "nothing"])
    except SystemExit as exc:  # argparse refuses unknown choices
        assert exc.code == 2
    assert "attention" in capsys.readouterr().err


def test_bench_json_is_serialisable():
    out = bench_model("cpu", repeats=1, cases=(ModelCase("tiny", "tiny", 32, 32, 5, "float32", 5),), log=lambda s: None)
    json.dumps(out)


def test_bench_model_puts_fp32_and_bf16_side_by_side(monkeypatch):
    import iasa_core.bench.model as mod

    cases = (ModelCase("tiny", "tiny", 32, 32, 5, "float32", 5), ModelCase("tiny-bf16", "tiny", 32, 32, 5, "bfloat16", 5))
    out = bench_model("cpu", repeats=1, cases=cases, log=lambda s: None)
    assert [r["case"]["dtype"] for r in out["results"]] == ["float32", "bfloat16"]
    assert out["bf16_speedup"]["dense_step"] > 0 and out["bf16_speedup"]["iasa_step"] > 0
    # The default CPU cases: fp32 and bf16, the latter only where the CPU has native bf16.
    assert [c.dtype for c in mod.CPU_CASES] == ["float32", "bfloat16"]
