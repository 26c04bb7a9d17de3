"""The embedded models, `python -m iasa_core demo` and `bench quality` end to end (CPU, shipped weights only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iasa_core.__main__ import main
from iasa_core.bench.quality import QualityRow, bench_quality, format_table, heldout_clips
from iasa_core.model.embedded import EMBEDDED_MODELS, WEIGHTS_DIR, embedded_path
from iasa_core.model.loading import load_model

MAX_SHIPPED_BYTES = 30 * 1000 * 1000


def test_embedded_models_ship_under_30_mb_and_load():
    total = 0
    for name in EMBEDDED_MODELS:
        path = embedded_path(name)
        total += path.stat().st_size
        system = load_model(name)
        assert system.config.name == "cpu-small"
        assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in system.denoiser.parameters())
        assert system.sparse["block_size"] == 64
    assert total <= MAX_SHIPPED_BYTES, f"{total / 1e6:.1f} MB in {WEIGHTS_DIR}"
    assert load_model("embedded").schedule["kind"] == "student"
    assert load_model("embedded-teacher").schedule["kind"] == "teacher"


def test_unknown_embedded_name_is_explained():
    with pytest.raises(ValueError, match="unknown embedded model"):
        embedded_path("embedded-nope")


def test_demo_makes_a_video_with_audio_and_reports_stages(tmp_path, capsys):
    from iasa_core.media import read_video, read_video_audio

    out = tmp_path / "demo.mp4"
    assert main(["demo", "--out", str(out), "--json", str(tmp_path / "demo.json")]) == 0
    text = capsys.readouterr().out
    for stage in ("audio_to_poses", "conditioning", "sampling", "decode", "frames per second"):
        assert stage in text
    frames, fps = read_video(out)
    assert frames.shape == (125, 128, 128, 3) and fps == 25.0
    audio = read_video_audio(out)
    assert audio is not None and abs(audio.duration - 5.0) < 0.1
    info = json.loads((tmp_path / "demo.json").read_text())
    assert info["frames"] == 125 and info["poses_to_frames_fps"] > 0
    assert frames.std() > 10  # a picture, not a flat frame


def test_demo_with_a_user_image_needs_its_pose(tmp_path):
    from PIL import Image

    img = tmp_path / "me.png"
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(img)
    code = main(["demo", "--image", str(img), "--out", str(tmp_path / "x.mp4"), "--models", str(tmp_path)])
    assert code == 2  # no DWPose weights here: the error says to give --ref-poses


def test_quality_rows_measure_against_the_ground_truth(tmp_path):
    clips = heldout_clips(1, 0.6)
    assert clips[0].frames.shape == (15, 128, 128, 3)
    rows = [QualityRow("teacher", "embedded-teacher", "teacher", sparse=False),
            QualityRow("teacher + global", "embedded-teacher", "teacher", sparse=True, local=False),
            QualityRow("student", "embedded", "student", sparse=True)]
    result = bench_quality(clips=1, seconds=0.6, rows=rows, teacher_steps=2, log=lambda s: None)
    assert [r["row"]["name"] for r in result["rows"]] == ["teacher", "teacher + global", "student"]
    for r in result["rows"]:
        assert r["frames"] == 15 and r["fps"] > 0
        assert 5 < r["psnr"] < 60 and 0 < r["ssim"] <= 1
        assert np.isfinite(r["face_psnr"]) and np.isfinite(r["hand_psnr"])
    assert result["rows"][0]["speedup_vs_first"] == pytest.approx(1.0)
    table = format_table(result)
    assert table.count("\n") == 4 and "| student |" in table


def test_bench_quality_cli_writes_json(tmp_path, capsys, monkeypatch):
    import iasa_core.bench.quality as quality

    monkeypatch.setattr(quality, "default_rows", lambda: [QualityRow("student", "embedded", "student", True)])
    out = tmp_path / "q.json"
    assert main(["bench", "quality", "--clips", "1", "--seconds", "0.4", "--json", str(out)]) == 0
    assert "| student |" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["clips"] == 1 and data["rows"][0]["frames"] == 10
