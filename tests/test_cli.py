"""The CLI as a user runs it: mask (numbers, preview, JSON), bench attention, demo, errors."""

import json

import numpy as np
import torch
from PIL import Image

from iasa_core.__main__ import main
from iasa_core.bench.attention import AttentionCase, run_case
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from iasa_core.sparse import build_plan


def test_mask_from_poses_file(tmp_path, capsys):
    seq = PoseSequence(synthetic_keypoints(21, 256, 256, seed=4), 256, 256, fps=25)
    poses = tmp_path / "poses.json"
    seq.save_json(poses)
    png, js = tmp_path / "mask.png", tmp_path / "mask.json"
    rc = main(["mask", "--poses", str(poses), "--size", "128x128", "--frames", "17", "--top-k", "2",
               "--block-size", "32", "--preview", str(png), "--json", str(js)])
    out = capsys.readouterr().out
    assert rc == 0
    summary = json.loads(js.read_text())
    expected = build_plan(PoseSequence(seq.keypoints[:17], 256, 256), (128, 128), top_k=2, block_size=32)
    assert summary["density"] == expected.density
    assert summary["seq_len"] == 5 * 8 * 8 and summary["latent_frames"] == 5
    assert f"density {expected.density:.4f}" in out
    assert np.array_equal(np.array(summary["topk"]), expected.topk)
    img = Image.open(png)
    assert img.width > expected.num_blocks and img.height >= expected.num_blocks


def test_mask_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["mask", "--poses", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.json" in err
    assert main(["mask", "--synthetic", "--size", "100x128"]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert main(["mask"]) == 2
    assert "--poses" in capsys.readouterr().err


def test_bench_case_reports_numbers():
    lines = []
    res = run_case(AttentionCase("tiny", 64, 96, 9, 2, 16, "float32"), torch.device("cpu"),
                   repeats=1, backends=("dense", "gather", "flashinfer"), log=lines.append)
    assert res["seq_len"] == 3 * 4 * 6
    assert 0 < res["density"] <= 1 and res["ideal_speedup"] == 1 / res["density"]
    assert res["backends"]["gather"]["seconds"] > 0
    assert res["backends"]["gather"]["speedup_vs_dense_sdpa"] == res["dense_sdpa_s"] / res["backends"]["gather"][
        "seconds"]
    assert "skipped" in res["backends"]["flashinfer"] or "seconds" in res["backends"]["flashinfer"]
    assert res["best_backend"] in ("gather", "flashinfer")
    assert any("density" in ln for ln in lines)
