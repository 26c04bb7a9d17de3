"""Talking videos -> filtered, cropped clips with keypoints, region labels and audio, in shards.

Per video: keypoints for every frame of the ``fps`` timeline (from a POSE_KEYPOINT JSON file or
DWPose), the paper's frame filter, runs of kept frames cut into clips of ``frames`` frames, then a
second decoding pass that crops and resizes only the frames those clips need. A video's shards are
written atomically, then its manifest lines, then its progress line: a crash anywhere loses at most
the video in hand, and a re-run of the same command resumes after the last finished video.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from iasa_core.media import read_video_audio
from iasa_core.pose.regions import pixel_region_labels
from iasa_core.pose.sequence import PoseSequence

from . import store
from .clips import (
    DROP_REASONS,
    KEPT,
    clip_audio,
    crop_box,
    crop_resize,
    filter_reasons,
    plan_clips,
    transform_keypoints,
)
from .options import FORMAT_VERSION, PrepareError, PrepareOptions
from .video import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    VideoReadError,
    as_fraction,
    find_videos,
    iter_frames,
    iter_resampled,
    probe_video,
    resampled_indices,
    video_id,
)

NO_PERSON_PREFIX = "no person found"  # iasa_core.detect.dwpose.NO_PERSON: no frame had anyone


class VideoDetector(Protocol):
    """What prepare needs of a pose detector (``DWPoseDetector`` has it)."""

    def detect_video(self, frames: Any, progress: Callable[[int, int], None] | None = None,
                     name: str = "the video") -> np.ndarray:
        """Keypoints (T, 133, 3) of one tracked person; zeros where nobody was found."""


class _Failed(Exception):
    """A video that cannot be used: a short reason for the report, and the details."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _bar(progress: bool, **kw: Any):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=not progress, dynamic_ncols=True, **kw)


def keypoint_file(keypoints_dir: Path, relative: str) -> Path | None:
    """The keypoint JSON of a video: <relative path minus extension>.json, <name>.json or <stem>.json."""
    rel = Path(relative)
    for cand in (keypoints_dir / rel.with_suffix(".json"), keypoints_dir / (relative + ".json"),
                 keypoints_dir / (rel.stem + ".json")):
        if cand.is_file():
            return cand
    return None


def _file_keypoints(path: Path, relative: str, keypoints_dir: Path, info: VideoInfo,
                    fps: Fraction) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints on the fps timeline (M, 133, 3), their source frame indices (M,)) from a JSON file."""
    kp_path = keypoint_file(keypoints_dir, relative)
    if kp_path is None:
        stem = Path(relative).with_suffix("")
        raise _Failed("no keypoints file", f"looked for {keypoints_dir / stem}.json and "
                      f"{keypoints_dir / Path(relative).stem}.json (POSE_KEYPOINT JSON, one entry per frame)")
    try:
        seq = PoseSequence.load_json(kp_path)
    except (ValueError, OSError) as exc:
        raise _Failed("bad keypoints", str(exc)) from None
    if info.num_frames is not None and info.num_frames != len(seq):
        raise _Failed("frame count mismatch", f"{kp_path} has {len(seq)} frames but {path} has "
                      f"{info.num_frames}; the file needs one entry per video frame")
    kp = seq.keypoints.copy()
    if (seq.height, seq.width) != (info.height, info.width):
        # Measured on a resized copy of the video: map pixel edges onto pixel edges.
        kp[..., 0] = (kp[..., 0] + 0.5) * info.width / seq.width - 0.5
        kp[..., 1] = (kp[..., 1] + 0.5) * info.height / seq.height - 0.5
        kp[kp[..., 2] <= 0] = 0.0
    src = resampled_indices(len(seq), info.fps, fps)
    return kp[src], src


def _detected_keypoints(path: Path, detector: VideoDetector, info: VideoInfo, fps: Fraction,
                        progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(keypoints (M, 133, 3), source indices (M,)) from running the detector on the resampled frames."""
    src: list[int] = []

    def frames() -> Iterator[np.ndarray]:
        for _, i, frame in iter_resampled(iter_frames(path), info.fps, fps):
            src.append(i)
            yield frame

    total = int(len(resampled_indices(info.num_frames, info.fps, fps))) if info.num_frames else None
    with _bar(progress, total=total, desc="  pose", unit="frame", leave=False) as bar:
        def tick(done: int, _total: int) -> None:
            bar.update(done - bar.n)

        try:
            kp = np.asarray(detector.detect_video(frames(), progress=tick, name=str(path)), dtype=np.float32)
        except VideoReadError as exc:
            raise _Failed("unreadable", str(exc)) from None
        except ValueError as exc:
            if not str(exc).startswith(NO_PERSON_PREFIX) or not src:
                raise _Failed("pose detection failed", str(exc)) from None
            kp = np.zeros((len(src), 133, 3), dtype=np.float32)  # nobody in any frame: all "no_person"
    if len(kp) != len(src):
        raise _Failed("pose detection failed", f"the detector returned {len(kp)} poses for {len(src)} frames")
    return kp, np.asarray(src, dtype=np.int64)


class _ShardWriter:
    """Collects a video's finished clips and writes them in parts of ``clips_per_shard``."""

    def __init__(self, out: Path, vid: str, relative: str, per_shard: int) -> None:
        self.out, self.vid, self.relative, self.per_shard = out, vid, relative, per_shard
        self.part, self.tensors, self.records, self.written = 0, {}, [], []
        self.pending: list[dict[str, Any]] = []

    def add(self, key: str, tensors: dict[str, np.ndarray], record: dict[str, Any]) -> None:
        """Queue one clip; writes the part when it is full."""
        self.tensors.update({f"{key}.{name}": t for name, t in tensors.items()})
        self.pending.append(record)
        if len(self.pending) >= self.per_shard:
            self.flush()

    def flush(self) -> None:
        """Write the queued clips as the next part."""
        if not self.pending:
            return
        name = store.shard_name(self.vid, self.part)
        meta = {"format": "iasa-clips", "version": str(FORMAT_VERSION), "video": self.relative,
                "video_id": self.vid}
        store.write_shard(self.out / store.SHARDS / name, self.tensors, meta)
        for rec in self.pending:
            rec["shard"] = f"{store.SHARDS}/{name}"
        self.records.extend(self.pending)
        self.written.append(f"{store.SHARDS}/{name}")
        self.part, self.tensors, self.pending = self.part + 1, {}, []


def _cut_clips(path: Path, relative: str, vid: str, out: Path, opts: PrepareOptions, info: VideoInfo,
               kp: np.ndarray, src: np.ndarray, starts: list[int], mono: np.ndarray | None,
               progress: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Second pass: decode, crop and resize the clips' frames, label them, write the shards."""
    fps = as_fraction(opts.fps)
    T, H, W = opts.frames, opts.height, opts.width
    n_audio = int(round(Fraction(T) / fps * opts.audio_rate))
    boxes = [crop_box(kp[s:s + T], info.height, info.width, H, W, opts.margin, opts.visible_score)
             for s in starts]
    ends = [s + T for s in starts]
    writer = _ShardWriter(out, vid, relative, opts.clips_per_shard)
    buffers: dict[int, np.ndarray] = {}
    lo = 0  # first clip not finished yet; clips start and end in order

    def finish(k: int) -> None:
        s, box = starts[k], boxes[k]
        kp_clip = transform_keypoints(kp[s:s + T], box, H, W)
        tensors = {
            "frames": buffers.pop(k),
            "keypoints": kp_clip.astype(np.float32),
            "labels": pixel_region_labels(kp_clip, H, W, opts.label_cell, opts.visible_score),
            "audio": clip_audio(mono, opts.audio_rate, float(s / fps), n_audio),
        }
        record = {"clip_id": f"{vid}/c{k}", "key": f"c{k}", "video": relative, "video_id": vid,
                  "start_frame": int(s), "source_frame": int(src[s]), "start_time": float(s / fps),
                  "num_frames": T, "fps": float(fps), "height": H, "width": W,
                  "audio_rate": opts.audio_rate, "audio_samples": n_audio, "has_audio": mono is not None,
                  "crop": box.as_list(), "source_size": [info.height, info.width]}
        writer.add(f"c{k}", tensors, record)

    with _bar(progress, total=ends[-1], desc="  clips", unit="frame", leave=False) as bar:
        for j, _, frame in iter_resampled(iter_frames(path), info.fps, fps):
            if j >= ends[-1]:
                break
            bar.update(1)
            if frame.shape[:2] != (info.height, info.width):
                raise _Failed("unreadable", f"{path}: frame {j} is {frame.shape[1]}x{frame.shape[0]}, the header "
                              f"says {info.width}x{info.height}")
            for k in range(lo, len(starts)):
                if starts[k] > j:
                    break
                if k not in buffers:
                    buffers[k] = np.empty((T, H, W, 3), dtype=np.uint8)
                buffers[k][j - starts[k]] = crop_resize(frame, boxes[k], H, W)
            while lo < len(starts) and ends[lo] - 1 == j:
                finish(lo)
                lo += 1
    if lo < len(starts):
        raise _Failed("frame count mismatch", f"{path} ended before frame {ends[lo] - 1} (at {float(fps):g} fps) "
                      f"that its keypoints describe; the keypoint file must have one entry per video frame")
    writer.flush()
    return writer.records, writer.written


def _process_video(path: Path, relative: str, out: Path, opts: PrepareOptions, keypoints_dir: Path | None,
                   detector: VideoDetector | None, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One video -> (its progress entry, its manifest records); the shards are on disk when it returns."""
    vid = video_id(relative)
    t0 = time.monotonic()
    fps = as_fraction(opts.fps)
    base = {"video": relative, "video_id": vid}
    shard_dir = out / store.SHARDS
    store.remove_video_shards(shard_dir, vid)  # leftovers of an attempt that crashed
    try:
        try:
            info = probe_video(path)
        except VideoReadError as exc:
            raise _Failed("unreadable", str(exc)) from None
        mono = None
        if info.has_audio:
            try:
                clip = read_video_audio(path)
            except (ValueError, OSError) as exc:  # AudioError and MediaError are ValueErrors
                raise _Failed("unreadable audio", str(exc)) from None
            mono = None if clip is None else np.asarray(clip.mono(opts.audio_rate), dtype=np.float32)
        elif not opts.allow_no_audio:
            raise _Failed("no audio", f"{path} has no audio track; talking-video clips need speech "
                          "(pass --allow-no-audio to keep it with silent clips)")
        if keypoints_dir is not None:
            kp, src = _file_keypoints(path, relative, keypoints_dir, info, fps)
            source = "file"
        else:
            assert detector is not None
            kp, src = _detected_keypoints(path, detector, info, fps, progress)
            source = "detector"
        reasons = filter_reasons(kp, opts)
        starts, final = plan_clips(reasons, opts.frames, opts.clip_stride, opts.max_clips_per_video)
        records, shards = [], []
        if starts:
            try:
                records, shards = _cut_clips(path, relative, vid, out, opts, info, kp, src, starts, mono, progress)
            except VideoReadError as exc:
                raise _Failed("unreadable", str(exc)) from None
    except _Failed as exc:
        store.remove_video_shards(shard_dir, vid)
        entry = {**base, "status": "failed", "reason": exc.reason, "detail": exc.detail,
                 "seconds": round(time.monotonic() - t0, 3)}
        return entry, []
    dropped = Counter(str(r) for r in final if r != KEPT)
    entry = {**base, "status": "done", "clips": len(records), "frames": int(len(kp)),
             "source_frames": info.num_frames, "kept_frames": int((final == KEPT).sum()),
             "dropped": {r: int(dropped[r]) for r in DROP_REASONS if dropped[r]}, "shards": shards,
             "has_audio": mono is not None, "keypoints": source, "seconds": round(time.monotonic() - t0, 3)}
    return entry, records


def _load_state(out: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Last progress entry per video, and the manifest cut down to finished videos (rewritten if needed)."""
    progress_path, manifest_path = out / store.PROGRESS, out / store.MANIFEST
    lines = store.read_lines(progress_path)
    entries: dict[str, dict[str, Any]] = {}
    for rec in lines:
        if "video" in rec and rec.get("status") in ("done", "failed"):
            entries[rec["video"]] = rec
    if len(lines) != len(entries) or store.torn(progress_path):
        store.rewrite_lines(progress_path, entries.values())
    done_ids = {e["video_id"] for e in entries.values() if e["status"] == "done"}
    manifest = store.read_lines(manifest_path)
    seen: set[str] = set()
    kept = []
    for rec in manifest:
        # Lines of a video that crashed after its manifest append but before its progress line.
        if rec.get("video_id") in done_ids and rec.get("clip_id") not in seen:
            seen.add(rec["clip_id"])
            kept.append(rec)
    if len(kept) != len(manifest) or store.torn(manifest_path):
        store.rewrite_lines(manifest_path, kept)
    for tmp in (out / store.SHARDS).glob(".*.tmp"):
        tmp.unlink()
    return entries, kept


def build_report(out: Path, opts: PrepareOptions, entries: dict[str, dict[str, Any]], n_clips: int,
                 run: dict[str, int]) -> dict[str, Any]:
    """The dataset's report: videos done/failed (with reasons), frames kept/dropped per reason, clips."""
    done = [e for e in entries.values() if e["status"] == "done"]
    failed = [e for e in entries.values() if e["status"] == "failed"]
    dropped = Counter()
    for e in done:
        dropped.update(e.get("dropped", {}))
    return {
        "dataset": str(out),
        "options": opts.content(),
        "videos": {"done": len(done), "failed": len(failed), "with_clips": sum(1 for e in done if e["clips"]),
                   **run},
        "failed_reasons": dict(sorted(Counter(e["reason"] for e in failed).items())),
        "failed": [{"video": e["video"], "reason": e["reason"], "detail": e["detail"]} for e in failed],
        "frames": {"total": sum(e["frames"] for e in done), "kept": sum(e["kept_frames"] for e in done),
                   "dropped": {r: int(dropped[r]) for r in DROP_REASONS}},
        "clips": n_clips,
        "hours": round(n_clips * opts.frames / opts.fps / 3600.0, 4),
    }


def format_report(report: dict[str, Any]) -> str:
    """A short human summary of ``report`` (what the CLI prints)."""
    v, f = report["videos"], report["frames"]
    lines = [f"dataset {report['dataset']}: {report['clips']} clips ({report['hours'] * 60:.1f} min) "
             f"from {v['with_clips']} videos",
             f"videos: {v['found']} found, {v['processed']} processed now, {v['skipped']} already finished; "
             f"{v['done']} done, {v['failed']} failed"]
    for reason, n in report["failed_reasons"].items():
        lines.append(f"  failed ({reason}): {n}")
    for item in report["failed"][:10]:
        lines.append(f"    {item['video']}: {item['detail']}")
    if len(report["failed"]) > 10:
        lines.append(f"    ... {len(report['failed']) - 10} more in report.json")
    pct = 100.0 * f["kept"] / f["total"] if f["total"] else 0.0
    lines.append(f"frames at {report['options']['fps']:g} fps: {f['total']} seen, {f['kept']} kept ({pct:.1f} %)")
    for reason, n in f["dropped"].items():
        if n:
            lines.append(f"  dropped ({reason}): {n}")
    return "\n".join(lines)


def source_videos(videos_dir: str | Path, keypoints_dir: str | Path | None = None) -> list[Path]:
    """The videos under ``videos_dir``; FileNotFoundError / PrepareError when a folder is missing or holds none."""
    if keypoints_dir is not None and not Path(keypoints_dir).is_dir():
        raise PrepareError(f"--keypoints {keypoints_dir}: no such folder; give the folder of <video name>.json files")
    videos = find_videos(videos_dir)
    if not videos:
        raise PrepareError(f"--videos {videos_dir}: no video files ({', '.join(VIDEO_EXTENSIONS)}) found in it "
                           "or its sub-folders")
    return videos


def prepare_dataset(videos_dir: str | Path, out_dir: str | Path, options: PrepareOptions | None = None,
                    keypoints_dir: str | Path | None = None, detector: VideoDetector | None = None,
                    progress: bool = True, retry_failed: bool = False) -> dict[str, Any]:
    """Prepare (or resume) DATASET from the videos under ``videos_dir``; returns the report dict.

    Keypoints come from ``keypoints_dir`` (POSE_KEYPOINT JSON per video) when given, else from
    ``detector`` (e.g. ``DWPoseDetector``). Videos already finished in DATASET are skipped; failed
    ones too unless ``retry_failed``.
    """
    opts = (options or PrepareOptions()).validate()
    if keypoints_dir is None and detector is None:
        raise PrepareError("no keypoint source: give --keypoints DIR (POSE_KEYPOINT JSON per video) or let "
                           "DWPose detect them (put its weights in --dwpose-dir)")
    videos_dir = Path(videos_dir)
    kdir = Path(keypoints_dir) if keypoints_dir is not None else None
    videos = source_videos(videos_dir, kdir)
    out = store.check_output_dir(out_dir, opts)
    run = {"found": len(videos), "processed": 0, "skipped": 0}
    with store.locked(out):
        entries, manifest = _load_state(out)
        n_clips = len(manifest)
        with _bar(progress, total=len(videos), desc="videos", unit="video") as bar:
            for path in videos:
                rel = path.relative_to(videos_dir).as_posix()
                prev = entries.get(rel)
                if prev is not None and (prev["status"] == "done" or not retry_failed):
                    run["skipped"] += 1
                    bar.update(1)
                    continue
                bar.set_postfix_str(rel[-40:])
                try:
                    entry, records = _process_video(path, rel, out, opts, kdir, detector, progress)
                except BaseException:
                    print(f"\ntraining.prepare stopped while preparing {path}; finished videos are kept: "
                          f"run the same command again to resume", file=sys.stderr)
                    raise
                # Manifest lines first: a crash between the two appends is undone by _load_state.
                store.append_lines(out / store.MANIFEST, records)
                store.append_lines(out / store.PROGRESS, [entry])
                entries[rel] = entry
                n_clips += len(records)
                run["processed"] += 1
                bar.update(1)
        report = build_report(out, opts, entries, n_clips, run)
        (out / store.REPORT).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
