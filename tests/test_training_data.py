"""Training data preparation: synthetic talking videos with given keypoints -> shards, manifest, report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from iasa_core.audio import AudioClip
from iasa_core.media import write_video
from iasa_core.pose import layout as L
from iasa_core.pose.regions import pixel_region_labels
from iasa_core.pose.render import render_poses
from iasa_core.pose.sequence import PoseSequence
from iasa_core.pose.synthetic import synthetic_keypoints
from training import prepare as prepare_cli
from training.data import (
    ClipDataset,
    DatasetError,
    PrepareError,
    PrepareOptions,
    collate_clips,
    pipeline,
    prepare_dataset,
)
from training.data.clips import (
    CROP_POINTS,
    KEPT,
    CropBox,
    crop_box,
    crop_resize,
    filter_reasons,
    plan_clips,
    transform_keypoints,
)
from training.data.video import iter_resampled, resampled_indices, source_index, video_id

H, W = 160, 192          # source canvas
SIZE, FRAMES = 64, 9     # clip size and length used throughout
OPTS = PrepareOptions(height=SIZE, width=SIZE, frames=FRAMES, fps=25.0)
AUDIO_SR = 16000  # the clips' rate: no resampling, so the test does not pay scipy.signal's 2 s import


def _bg(i: int) -> int:
    """Background grey of source frame i: tells which source frame ended up in a clip."""
    return 20 + (3 * i) % 150


def _poses(n: int, seed: int) -> np.ndarray:
    """A person drawn in a 96 x 96 box placed inside the H x W canvas (room around for the crop)."""
    kp = synthetic_keypoints(n, 96, 96, seed=seed, fps=50.0)
    kp[..., 0] += 48.0
    kp[..., 1] += 40.0
    # synthetic_keypoints gives the face exactly 0.9, on the filter's (strict) threshold: a clear pass.
    kp[:, list(L.FACE), 2] = np.where(kp[:, list(L.FACE), 2] > 0, 0.95, 0.0)
    kp[kp[..., 2] <= 0] = 0.0
    return kp


def _frames(kp: np.ndarray) -> np.ndarray:
    """Skeleton on a grey background whose level encodes the frame index, white marker on the nose."""
    skel = render_poses(kp, H, W)
    out = np.empty_like(skel)
    for i in range(len(kp)):
        out[i] = _bg(i)
        drawn = skel[i].any(-1)
        out[i][drawn] = skel[i][drawn]
        if kp[i, L.NOSE, 2] > 0:
            x, y = (int(round(v)) for v in kp[i, L.NOSE, :2])
            out[i, y - 3:y + 4, x - 3:x + 4] = 255
    return out


def _audio(seconds: float) -> AudioClip:
    """Stereo 440 Hz whose loudness rises with time: a clip's level tells where it was cut."""
    t = np.arange(int(seconds * AUDIO_SR)) / AUDIO_SR
    wave = (np.sin(2 * np.pi * 440 * t) * (0.1 + 0.5 * t / seconds)).astype(np.float32)
    return AudioClip(np.stack([wave, wave]), AUDIO_SR, "test")


def _write(root: Path, kdir: Path, rel: str, kp: np.ndarray, fps: float, audio: bool = True,
           keypoints: bool = True) -> None:
    path = root / rel
    write_video(path, _frames(kp), fps, audio=_audio(len(kp) / fps) if audio else None)
    if keypoints:
        (kdir / Path(rel).parent).mkdir(parents=True, exist_ok=True)
        PoseSequence(kp, H, W, fps=fps).save_json(kdir / Path(rel).with_suffix(".json"))


def _poses_b() -> np.ndarray:
    """50 fps, 100 frames (50 at 25 fps) with bad stretches: frame j at 25 fps is source 2j, 2j+1."""
    kp = _poses(100, seed=1)
    for j in (10, 11, 12):                       # face score below 0.9
        kp[2 * j:2 * j + 2, list(L.FACE), 2] = 0.5
    kp[40:42] = 0.0                              # j = 20: nobody
    kp[50:52, list(L.UPPER_BODY), 2] = 0.5       # j = 25: upper-body score below 0.8
    kp[56:58, list(L.UPPER_BODY), 2] = 1.0       # j = 28: two upper points invisible, mean still > 0.8
    kp[56:58, [L.L_EAR, L.R_EAR], 2] = 0.1
    return kp


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Videos: a (25 fps, clean), sub/b (50 fps, bad stretches), silent (no audio), broken, zz_nokp."""
    root = tmp_path_factory.mktemp("videos")
    kdir = tmp_path_factory.mktemp("keypoints")
    kp_a = _poses(40, seed=0)
    _write(root, kdir, "a.mp4", kp_a, 25.0)
    _write(root, kdir, "sub/b.mp4", _poses_b(), 50.0)
    _write(root, kdir, "silent.mp4", _poses(12, seed=2), 25.0, audio=False)
    (root / "broken.mp4").write_bytes(os.urandom(2000))
    shutil.copy(root / "a.mp4", root / "zz_nokp.mp4")
    (root / "notes.txt").write_text("not a video")
    return {"videos": root, "keypoints": kdir}


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ds") / "dataset"
    report = prepare_dataset(sources["videos"], out, OPTS, keypoints_dir=sources["keypoints"], progress=False)
    return out, report


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- units


def test_resampling_is_nearest_frame_and_exact():
    assert resampled_indices(8, 50, 25).tolist() == [0, 2, 4, 6]
    assert resampled_indices(6, 30, 25).tolist() == [0, 1, 2, 4, 5]   # 30 -> 25: j * 1.2 rounded
    assert resampled_indices(4, 20, 25).tolist() == [0, 1, 2, 2, 3]   # upsampling repeats frames
    assert source_index(5, 30, 25) == 6
    got = [(j, i) for j, i, _ in iter_resampled(iter(range(6)), 20, 25)]
    assert got == [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 5)]


def test_filter_reasons_and_clip_plan():
    kp = np.repeat(_poses(1, seed=3), 6, axis=0)
    kp[1] = 0.0
    kp[2, list(L.FACE), 2] = 0.2
    kp[3, list(L.UPPER_BODY), 2] = 0.2      # upper score and visibility both fail: the first reason wins
    kp[4, [L.L_EAR, L.R_EAR], 2] = 0.1
    kp[4, [L.NOSE, L.L_EYE, L.R_EYE] + list(range(5, 11)), 2] = 1.0
    reasons = filter_reasons(kp, OPTS)
    assert reasons.tolist() == [KEPT, "no_person", "face_score", "upper_body_score", "visibility", KEPT]

    r = np.array([KEPT] * 12 + ["face_score"] + [KEPT] * 3 + [KEPT] * 0, dtype=object)
    starts, final = plan_clips(r, 5, 5)
    assert starts == [0, 5]
    assert final[10:12].tolist() == ["run_remainder"] * 2 and final[13:].tolist() == ["run_too_short"] * 3
    starts, final = plan_clips(np.array([KEPT] * 25, dtype=object), 5, 5, max_clips=3)
    assert starts == [0, 10, 20] and (final == "max_clips").sum() == 10
    starts, _ = plan_clips(np.array([KEPT] * 9, dtype=object), 5, 2)
    assert starts == [0, 2, 4]


def test_crop_resize_moves_a_point_where_transform_keypoints_says():
    img = np.zeros((100, 140, 3), dtype=np.uint8)
    img[40:44, 90:94] = 255                                   # centre (91.5, 41.5)
    kp = np.zeros((1, L.NUM_KEYPOINTS, 3), np.float32)
    kp[0, 0] = [91.5, 41.5, 1.0]
    box = CropBox(60, 10, 80, 80)
    out = crop_resize(img, box, 32, 32).astype(np.float64).sum(-1)
    ys, xs = np.mgrid[:32, :32]
    centroid = np.array([(xs * out).sum(), (ys * out).sum()]) / out.sum()
    assert np.allclose(transform_keypoints(kp, box, 32, 32)[0, 0, :2], centroid, atol=0.05)
    assert transform_keypoints(kp, box, 32, 32)[0, 0, 2] == 1.0
    # A crop reaching outside the frame repeats the edge pixels.
    padded = crop_resize(img, CropBox(-10, -10, 20, 20), 20, 20)
    assert padded.shape == (20, 20, 3) and (padded == 0).all()


def test_crop_box_holds_pose_and_shrinks_before_padding():
    kp = _poses(9, seed=0)
    box = crop_box(kp, H, W, SIZE, SIZE, 1.5, 0.3)
    assert box.width == box.height and box.width <= min(H, W)
    assert 0 <= box.x0 and box.x0 + box.width <= W and 0 <= box.y0 and box.y0 + box.height <= H
    pts = kp[:, CROP_POINTS].reshape(-1, 3)
    pts = pts[pts[:, 2] >= 0.3, :2]                           # box about 38 x 44 px
    assert (pts[:, 0] >= box.x0).all() and (pts[:, 0] < box.x0 + box.width).all()
    assert (pts[:, 1] >= box.y0).all() and (pts[:, 1] < box.y0 + box.height).all()
    assert box.width == round((pts.max(0) - pts.min(0) + 1).max() * 1.5)
    # A margin too big for the frame shrinks to the largest crop that fits (no padding) ...
    big = crop_box(kp, H, W, SIZE, SIZE, 5.0, 0.3)
    assert (big.y0, big.width, big.height) == (0, 160, 160) and 0 <= big.x0 <= W - 160
    # ... and only a pose box bigger than the frame makes a crop reach outside (edge padding).
    tight = crop_box(kp - [0, 50, 0], 40, W, SIZE, SIZE, 1.5, 0.3)
    assert tight.height == 44 and tight.y0 < 0 and tight.y0 + tight.height > 40
    wide = crop_box(kp, H, W, 32, 64, 1.5, 0.3)              # 2:1 output keeps its aspect
    assert abs(wide.width / wide.height - 2.0) < 0.05


def test_region_labels_match_full_resolution_closely():
    kp = transform_keypoints(_poses(2, seed=0), crop_box(_poses(2, seed=0), H, W, 128, 128, 1.5, 0.3), 128, 128)
    coarse, fine = pixel_region_labels(kp, 128, 128, 4, 0.3), pixel_region_labels(kp, 128, 128, 1, 0.3)
    assert coarse.shape == (2, 128, 128) and coarse.dtype == np.uint8
    assert set(np.unique(coarse)) == {0, 1, 2, 3, 4}
    assert (coarse == fine).mean() > 0.95


def test_options_refuse_bad_values():
    with pytest.raises(PrepareError, match=r"4n \+ 1.*use e.g. 9 or 13"):
        PrepareOptions(frames=10).validate()
    with pytest.raises(PrepareError, match="multiple of 16"):
        PrepareOptions(height=500).validate()
    with pytest.raises(PrepareError, match="--margin"):
        PrepareOptions(margin=0.5).validate()
    assert PrepareOptions().content()["stride"] == 81 and PrepareOptions().label_cell == 4


def test_video_ids_are_safe_and_distinct():
    a, b = video_id("x y/a b.mp4"), video_id("x_y/a_b.mp4")
    assert a != b and all(c.isalnum() or c in "_-" for c in a)


# ---------------------------------------------------------------------- end to end


def test_report_counts_every_frame_and_every_video(prepared):
    out, report = prepared
    assert report["videos"] == {"done": 2, "failed": 3, "with_clips": 2, "found": 5, "processed": 5, "skipped": 0}
    assert report["failed_reasons"] == {"no audio": 1, "no keypoints file": 1, "unreadable": 1}
    assert report["clips"] == 7
    # a: 40 frames -> clips at 0, 9, 18, 27 and 4 left over. b: 50 frames at 25 fps, see _poses_b.
    assert report["frames"] == {"total": 90, "kept": 63, "dropped": {
        "no_person": 1, "face_score": 3, "upper_body_score": 1, "visibility": 1, "run_too_short": 13,
        "run_remainder": 8, "max_clips": 0}}
    assert json.loads((out / "report.json").read_text()) == report
    text = pipeline.format_report(report)
    assert "failed (no audio): 1" in text and "dropped (face_score): 3" in text


def test_manifest_and_shards(prepared):
    out, _ = prepared
    recs = _manifest(out)
    assert [(r["video"], r["start_frame"]) for r in recs] == [
        ("a.mp4", 0), ("a.mp4", 9), ("a.mp4", 18), ("a.mp4", 27), ("sub/b.mp4", 0), ("sub/b.mp4", 29),
        ("sub/b.mp4", 38)]
    assert len({r["clip_id"] for r in recs}) == 7
    assert {r["shard"] for r in recs} == {f"shards/{video_id('a.mp4')}.safetensors",
                                          f"shards/{video_id('sub/b.mp4')}.safetensors"}
    assert all(r["audio_samples"] == 5760 and r["fps"] == 25.0 and r["has_audio"] for r in recs)
    progress = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert sorted(p["video"] for p in progress) == ["a.mp4", "broken.mp4", "silent.mp4", "sub/b.mp4", "zz_nokp.mp4"]
    assert not list((out / "shards").glob(".*"))


def test_clip_content_is_aligned_and_transformed(prepared, sources):
    out, _ = prepared
    ds = ClipDataset(out)
    kp_b = PoseSequence.load_json(sources["keypoints"] / "sub" / "b.json").keypoints
    for i, rec in enumerate(_manifest(out)):
        item = ds[i]
        frames, kp, labels, audio = item["frames"], item["keypoints"], item["labels"], item["audio"]
        assert frames.shape == (FRAMES, SIZE, SIZE, 3) and frames.dtype == torch.uint8
        assert kp.shape == (FRAMES, 133, 3) and kp.dtype == torch.float32
        assert labels.shape == (FRAMES, SIZE, SIZE) and labels.dtype == torch.uint8
        assert audio.shape == (5760,) and audio.dtype == torch.float32 and item["clip_id"] == rec["clip_id"]
        fps_ratio = 2 if rec["video"] == "sub/b.mp4" else 1
        for t in range(FRAMES):
            src = fps_ratio * (rec["start_frame"] + t)
            # Which source frame: the background level at the crop's top-left corner.
            assert abs(int(frames[t, 1, 1, 0]) - _bg(src)) <= 4, (rec["clip_id"], t)
            # The white nose marker sits where the transformed nose keypoint says.
            white = frames[t].min(-1).values.numpy() > 150
            ys, xs = np.nonzero(white)
            assert np.allclose([xs.mean(), ys.mean()], kp[t, L.NOSE, :2].numpy(), atol=1.0), (rec["clip_id"], t)
        # Keypoints: the source's, through crop + resize.
        if rec["video"] == "sub/b.mp4":
            x0, y0, cw, ch = rec["crop"]
            srcs = [2 * (rec["start_frame"] + t) for t in range(FRAMES)]
            want = (kp_b[srcs, :, 0] - x0 + 0.5) * SIZE / cw - 0.5
            assert np.allclose(kp[..., 0].numpy(), np.where(kp_b[srcs, :, 2] > 0, want, 0), atol=1e-3)
            assert np.array_equal(kp[..., 2].numpy(), kp_b[srcs, :, 2])
        # Labels: each region where its keypoints are.
        k0, lab0 = kp[0].numpy(), labels[0].numpy()
        for idx, region in ((L.FACE, L.REGION_FACE), (L.LEFT_HAND, L.REGION_HANDS)):
            x, y = np.round(k0[list(idx), :2].mean(0)).astype(int)
            assert lab0[y, x] == region, (rec["clip_id"], region)
        # Arms cross the torso (and take precedence), so body and arms are checked by presence.
        assert set(labels[0].unique().tolist()) == {0, L.REGION_FACE, L.REGION_HANDS, L.REGION_ARMS, L.REGION_BODY}
        assert int(labels[0, 0, 0]) == 0
        # Audio: the clip's span of the track (level rises with time; AAC adds small errors).
        mid = (rec["start_frame"] + FRAMES / 2) / 25.0
        duration = 40 / 25.0 if rec["video"] == "a.mp4" else 2.0
        expected_rms = (0.1 + 0.5 * mid / duration) / np.sqrt(2)
        assert abs(float(audio.pow(2).mean().sqrt()) / expected_rms - 1) < 0.1


def test_clip_dataset_round_trip_and_collate(prepared):
    from safetensors.numpy import load_file

    out, _ = prepared
    ds = ClipDataset(out)
    assert len(ds) == 7
    rec = _manifest(out)[5]
    raw = load_file(str(out / rec["shard"]))
    item = ds[5]
    for name in ("frames", "keypoints", "labels", "audio"):
        assert np.array_equal(item[name].numpy(), raw[f"{rec['key']}.{name}"])
    batch = collate_clips([ds[0], ds[1]])
    assert batch["frames"].shape == (2, FRAMES, SIZE, SIZE, 3) and batch["clip_id"] == [ds[0]["clip_id"], ds[1]["clip_id"]]
    odd = dict(ds[2], frames=torch.zeros(5, SIZE, SIZE, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="'frames' differs in shape"):
        collate_clips([ds[0], odd])


def test_clip_dataset_errors(tmp_path, prepared):
    with pytest.raises(DatasetError, match="no manifest.jsonl"):
        ClipDataset(tmp_path)
    (tmp_path / "manifest.jsonl").write_text("")
    with pytest.raises(DatasetError, match="lists no clips"):
        ClipDataset(tmp_path)
    out, _ = prepared
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / _manifest(out)[0]["shard"]).unlink()
    with pytest.raises(DatasetError, match="is missing.*progress.jsonl"):
        ClipDataset(copy)[0]


def test_option_mismatch_is_refused(prepared, sources):
    out, _ = prepared
    with pytest.raises(PrepareError, match=r"frames: dataset has 9, this run asks 13.*new --out"):
        prepare_dataset(sources["videos"], out, PrepareOptions(height=SIZE, width=SIZE, frames=13),
                        keypoints_dir=sources["keypoints"], progress=False)


def test_resume_after_crash_skips_finished_videos(sources, tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    shutil.copy(sources["videos"] / "a.mp4", videos / "a.mp4")
    shutil.copy(sources["videos"] / "sub" / "b.mp4", videos / "sub" / "b.mp4")
    out = tmp_path / "ds"
    real = pipeline._process_video
    calls: list[str] = []

    def crashing(path, rel, *args, **kw):
        calls.append(rel)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(path, rel, *args, **kw)

    monkeypatch.setattr(pipeline, "_process_video", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_dataset(videos, out, OPTS, keypoints_dir=sources["keypoints"], progress=False)
    assert len(_manifest(out)) == 4
    shard_a = out / "shards" / f"{video_id('a.mp4')}.safetensors"
    mtime = shard_a.stat().st_mtime_ns
    # What a crash while writing b could also leave: a temporary shard and b's manifest lines.
    vid_b = video_id("sub/b.mp4")
    (out / "shards" / f".{vid_b}.safetensors.999.tmp").write_bytes(b"partial")
    with open(out / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps({"clip_id": f"{vid_b}/c0", "video_id": vid_b}) + "\n" + '{"clip_id": "torn')
    with open(out / "progress.jsonl", "a") as fh:
        fh.write('{"video": "sub/b.mp4", "sta')

    calls.clear()
    monkeypatch.setattr(pipeline, "_process_video", lambda path, rel, *a, **k: calls.append(rel) or real(path, rel, *a, **k))
    report = prepare_dataset(videos, out, OPTS, keypoints_dir=sources["keypoints"], progress=False)
    assert calls == ["sub/b.mp4"]
    assert shard_a.stat().st_mtime_ns == mtime
    ids = [r["clip_id"] for r in _manifest(out)]
    assert len(ids) == len(set(ids)) == 7 == report["clips"]
    assert report["videos"]["skipped"] == 1 and report["frames"]["kept"] == 63
    assert not list((out / "shards").glob(".*"))
    assert len(ClipDataset(out)) == 7


def test_detector_path_matches_file_keypoints(sources, tmp_path, prepared):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sources["videos"] / "a.mp4", videos / "a.mp4")
    kp_a = PoseSequence.load_json(sources["keypoints"] / "a.json").keypoints

    class FakeDetector:
        seen = 0

        def detect_video(self, frames, progress=None, name=""):
            n = sum(1 for _ in frames)
            FakeDetector.seen += n
            return kp_a[:n]

    report = prepare_dataset(videos, tmp_path / "ds", OPTS, detector=FakeDetector(), progress=False)
    assert FakeDetector.seen == 40 and report["clips"] == 4
    mine, ref = ClipDataset(tmp_path / "ds"), ClipDataset(prepared[0])
    assert torch.equal(mine[1]["keypoints"], ref[1]["keypoints"])
    assert torch.equal(mine[1]["frames"], ref[1]["frames"])

    class NobodyDetector:
        def detect_video(self, frames, progress=None, name=""):
            for _ in frames:
                pass
            raise ValueError(f"no person found in {name}; ...")

    report = prepare_dataset(videos, tmp_path / "ds2", OPTS, detector=NobodyDetector(), progress=False)
    assert report["clips"] == 0 and report["frames"]["dropped"]["no_person"] == 40


def test_cli(sources, tmp_path, capsys, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sources["videos"] / "a.mp4", videos / "a.mp4")
    common = ["--videos", str(videos), "--size", "64", "--frames", "9", "--no-progress"]
    assert prepare_cli.main(common + ["--out", str(tmp_path / "ds"), "--keypoints", str(sources["keypoints"]),
                                      "--max-clips-per-video", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 clips" in printed and "dropped (max_clips): 18" in printed
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["content"]["frames"] == 9

    assert prepare_cli.main(common[:-3] + ["--frames", "10", "--out", str(tmp_path / "x"), "--keypoints",
                                           str(sources["keypoints"])]) == 2
    assert "4n + 1" in capsys.readouterr().err and not (tmp_path / "x").exists()

    import iasa_core.detect.dwpose as dw
    monkeypatch.setattr(dw, "_from_hf_cache", lambda repo, name: None)
    assert prepare_cli.main(common + ["--out", str(tmp_path / "y"), "--dwpose-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "DWPose weights not found" in err and "Traceback" not in err

    with pytest.raises(SystemExit) as exc:
        prepare_cli.main(["--help"])
    assert exc.value.code == 0
    assert "--max-clips-per-video" in capsys.readouterr().out


def test_resized_keypoint_canvas_and_frame_count_mismatch(sources, tmp_path, prepared):
    videos, kdir = tmp_path / "videos", tmp_path / "kp"
    videos.mkdir()
    kdir.mkdir()
    for name in ("half.mp4", "short.mp4"):
        shutil.copy(sources["videos"] / "a.mp4", videos / name)
    kp = PoseSequence.load_json(sources["keypoints"] / "a.json").keypoints
    half = kp.copy()
    half[..., :2] = (half[..., :2] + 0.5) / 2 - 0.5          # measured on a half-size copy
    PoseSequence(half, H // 2, W // 2, fps=25.0).save_json(kdir / "half.json")
    PoseSequence(kp[:39], H, W, fps=25.0).save_json(kdir / "short.json")
    report = prepare_dataset(videos, tmp_path / "ds", OPTS, keypoints_dir=kdir, progress=False)
    assert report["failed_reasons"] == {"frame count mismatch": 1} and report["clips"] == 4
    assert "has 39 frames" in report["failed"][0]["detail"]
    mine, ref = ClipDataset(tmp_path / "ds"), ClipDataset(prepared[0])
    assert torch.allclose(mine[2]["keypoints"], ref[2]["keypoints"], atol=1e-3)
