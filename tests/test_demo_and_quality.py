"""The embedded models, `python -m iasa_core demo` and `bench quality` end to end (CPU, shipped weights only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iasa_core.__main__ import main
from iasa_core.bench.quality import QualityRow, bench_quality, format_table, heldout_clips
from iasa_core.model.embedded import EMBEDDED_MODELS, WEIGHTS_DIR, embedded_path
from iasa_core.model.loading import load_model

MAX_SHIPPED_BYTES = 40 * 1000 * 1000  # issue 13: at most 40 MB in total, float16 storage


def test_embedded_models_ship_under_40_mb_and_load():
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


def test_copy_row_is_the_static_floor():
    from iasa_core.bench.metrics import psnr
    from iasa_core.bench.quality import COPY_ROW, default_rows

    clips = heldout_clips(2, 0.6)
    result = bench_quality(clips=2, seconds=0.6, rows=[COPY_ROW], log=lambda s: None)
    row = result["rows"][0]
    expected = np.mean([psnr(np.repeat(c.frames[:1], len(c.frames), 0), c.frames) for c in clips])
    assert row["psnr"] == pytest.approx(expected) and row["first_psnr"] > 100  # frame 0 is exact
    assert row["frames"] == 30 and np.isnan(row["fps"])
    assert "| copy the reference frame (floor) | - | - |" in format_table(result)
    assert np.isnan(row["lip_sync"]) and format_table(result).endswith("| - |")  # a still copy moves no mouth
    assert default_rows()[0] == COPY_ROW


def test_bench_vae_reports_each_latent_frame(capsys, monkeypatch):
    import iasa_core.bench.vae as mod

    videos = mod.heldout_videos(1, frames=9)
    assert videos[0].shape == (1, 3, 9, 128, 128) and videos[0].min() >= -1 and videos[0].max() <= 1
    # A lossless stand-in VAE, then one that errs on video frames 5..8 only (latent frame 2).
    monkeypatch.setattr(mod, "encode_moments", lambda vae, x: torch.cat([x, x], dim=1))
    monkeypatch.setattr(mod, "decode_latents", lambda vae, z: z.clone())
    exact = mod.roundtrip_psnr(None, videos)
    assert exact["psnr"] > 100 and len(exact["psnr_per_latent"]) == 3
    monkeypatch.setattr(mod, "decode_latents", lambda vae, z: torch.cat([z[:, :, :5], z[:, :, 5:] + 0.1], dim=2))
    hurt = mod.roundtrip_psnr(None, videos)
    assert hurt["psnr_per_latent"][:2] == exact["psnr_per_latent"][:2]
    assert hurt["psnr_per_latent"][2] == pytest.approx(10 * np.log10(4 / 0.01), abs=1e-2)
    assert hurt["psnr_worst_latent"] == hurt["psnr_per_latent"][2]
    # Inside masks: an error of 0.2 on the face pixels only is seen there and nowhere else.
    _, masks = mod.heldout_set(1, frames=9)
    face = masks[0]["face"]
    assert face.shape == (9, 128, 128) and 0 < int(face.sum()) < face.numel() // 4
    monkeypatch.setattr(mod, "decode_latents", lambda vae, z: z + 0.2 * face.float())
    regions = mod.roundtrip_psnr(None, videos, masks=masks)
    assert regions["psnr_face"] == pytest.approx(10 * np.log10(4 / 0.04), abs=1e-2)
    assert regions["psnr_hands"] > 100 or not masks[0]["hands"].any()
    with pytest.raises(ValueError, match="mask sets"):
        mod.roundtrip_psnr(None, videos, masks=masks * 2)
    monkeypatch.undo()
    assert main(["bench", "vae", "--clips", "1", "--frames", "9", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "per latent frame:" in out and "first frame" in out and "face" in out and "hands" in out
    assert "shrunk 4x" in out and "shrunk 8x" in out and "a linear codec with the same budget (16 principal" in out


def test_thumbnail_reference_keeps_what_a_smaller_picture_keeps():
    import iasa_core.bench.vae as mod

    flat = torch.full((1, 3, 5, 32, 32), 0.25)
    assert torch.allclose(mod.thumbnail(flat, 8), flat, atol=1e-6)  # a flat picture survives any shrinking
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 1, 32).expand(1, 3, 5, 32, 32)
    assert mod.thumbnail(ramp, 4).shape == ramp.shape and (mod.thumbnail(ramp, 4) - ramp).abs().max() < 0.1
    videos, masks = mod.heldout_set(1, frames=5)
    fine, coarse = (mod.reconstruction_psnr(lambda x, f=f: mod.thumbnail(x, f), videos, masks) for f in (2, 8))
    assert 20 < coarse["psnr"] < fine["psnr"] < 60 and coarse["psnr_face"] < fine["psnr_face"]


def test_bench_quality_cli_writes_json(tmp_path, capsys, monkeypatch):
    import iasa_core.bench.quality as quality

    monkeypatch.setattr(quality, "default_rows", lambda: [QualityRow("student", "embedded", "student", True)])
    out = tmp_path / "q.json"
    assert main(["bench", "quality", "--clips", "1", "--seconds", "0.4", "--json", str(out)]) == 0
    assert "| student |" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["clips"] == 1 and data["rows"][0]["frames"] == 10


def test_bench_quality_takes_model_files_for_its_rows(monkeypatch):
    import iasa_core.bench.quality as quality

    rows = quality.default_rows(teacher="t.safetensors", student="s.safetensors")
    assert [r.model for r in rows] == ["", "t.safetensors", "t.safetensors", "t.safetensors", "embedded-dmd",
                                       "s.safetensors", "s.safetensors", "s.safetensors", "s.safetensors",
                                       "s.safetensors"]
    # the model rows show the model alone; three rows add the restorations
    assert [(r.face_restore, r.background_restore, r.body_restore) for r in rows] == [(False, False, False)] * 6 + [
        (True, False, False), (True, True, False), (True, True, True), (False, False, False)]
    seen = []
    monkeypatch.setattr(quality, "bench_quality", lambda **kw: seen.append(kw["rows"]) or {"rows": []})
    monkeypatch.setattr(quality, "format_table", lambda result: "")
    assert main(["bench", "quality", "--dmd", "d.safetensors"]) == 0
    assert [r.model for r in seen[0]][4:] == ["d.safetensors"] + ["embedded"] * 5
    assert main(["bench", "quality"]) == 0 and seen[1] is None  # no files given: the embedded models


def test_bench_quality_rows_pick_lines_of_the_table(monkeypatch, capsys):
    import iasa_core.bench.quality as quality

    rows = quality.default_rows(teacher="t.safetensors", only=["teacher", "floor"])
    assert [r.name for r in rows] == [quality.COPY_ROW.name, "teacher, many-step, dense"]  # the table's order
    assert rows[1].model == "t.safetensors" and not rows[1].sparse
    assert len(quality.default_rows(only=list(quality.ROW_KEYS))) == len(quality.default_rows())
    with pytest.raises(ValueError, match=r"unknown \['teacher-dense'\]; choose from floor, teacher"):
        quality.default_rows(only=["teacher-dense"])
    seen = []
    monkeypatch.setattr(quality, "bench_quality", lambda **kw: seen.append(kw["rows"]) or {"rows": []})
    monkeypatch.setattr(quality, "format_table", lambda result: "")
    assert main(["bench", "quality", "--rows", "floor, student-global"]) == 0
    assert [(r.model, r.local) for r in seen[0]] == [("", True), ("embedded", False)]
    assert main(["bench", "quality", "--rows", "dmd,nope"]) == 2
    assert "unknown ['nope']" in capsys.readouterr().err
    assert main(["bench", "quality", "--rows", ""]) == 2
    assert "empty list" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert ",".join(quality.ROW_KEYS) in "".join(capsys.readouterr().out.split())  # the help lists every key


def test_bench_quality_timing_passes_take_the_median_pass(monkeypatch, capsys):
    import iasa_core.bench.quality as quality

    rows = [quality.COPY_ROW, QualityRow("student", "embedded", "student", sparse=True)]
    passes = iter([3.0, 1.0])  # the second and third passes' seconds (the first is the measured generation)
    monkeypatch.setattr(quality, "time_row", lambda *a, **k: next(passes))
    result = bench_quality(clips=1, seconds=0.4, rows=rows, timing_passes=3, log=lambda s: None)
    floor, student = result["rows"]
    assert result["timing_passes"] == 3 and "seconds_passes" not in floor and np.isnan(floor["fps"])
    first = student["seconds_passes"][0]
    assert student["seconds_passes"][1:] == [3.0, 1.0]
    assert student["seconds"] == pytest.approx(sorted([first, 3.0, 1.0])[1])
    assert student["fps"] == pytest.approx(student["frames"] / student["seconds"])
    with pytest.raises(ValueError, match="timing passes must be a whole number >= 1"):
        bench_quality(clips=1, seconds=0.4, rows=rows, timing_passes=0)
    seen = []
    monkeypatch.setattr(quality, "bench_quality", lambda **kw: seen.append(kw["timing_passes"]) or {"rows": []})
    monkeypatch.setattr(quality, "format_table", lambda result: "")
    assert main(["bench", "quality", "--timing-passes", "3"]) == 0 and seen == [3]
    assert main(["bench", "quality", "--timing-passes", "0"]) == 2
    assert "--timing-passes must be a whole number at least 1" in capsys.readouterr().err


def test_a_timing_pass_generates_every_clip_again():
    from iasa_core.bench.quality import time_row

    row = QualityRow("student", "embedded", "student", sparse=True)
    assert time_row(row, heldout_clips(1, 0.4)) > 0
