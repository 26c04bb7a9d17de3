"""A synthetic talking-character world on disk: videos with speech, their poses, and their styles.

Layout written by :func:`make_world` (what ``python -m training.prepare --videos DIR/videos
--keypoints DIR/keypoints`` reads)::

    DIR/videos/<id>.mp4       H.264 video with the speech as an AAC track
    DIR/keypoints/<id>.json   POSE_KEYPOINT JSON, one entry per video frame, canvas = video size
    DIR/world.json            settings and, per sample, its style, motion kind and voice

Sample i depends only on (seed, i), so a larger world starts with the samples of a smaller one.
The mp4 holds the exact frames by default (lossless RGB H.264; ``lossless=False`` writes a playable lossy
one); :func:`ground_truth` (or :func:`sample_ground_truth`) redraws them from the keypoints and the style.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iasa_core.audio import AudioClip
from iasa_core.pose.sequence import PoseSequence

from .character import DEFAULT_SUPERSAMPLE, CharacterStyle, render_video
from .motion import MOTION_KINDS, character_motion, reference_pose
from .speech import speech_clip

WORLD_FORMAT = "iasa-synthetic-world"
WORLD_VERSION = 1
WORLD_FILE = "world.json"
SAMPLE_RATE = 16000

ProgressFn = Callable[[int, int, dict], None]


def sample_id(index: int) -> str:
    """File stem of sample ``index``."""
    return f"synth_{index:05d}"


def ground_truth(keypoints: np.ndarray, style: CharacterStyle, height: int, width: int, *,
                 supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """The exact frames (T, H, W, 3) uint8 of a pose sequence for a style (= :func:`render_video`)."""
    return render_video(keypoints, style, height, width, supersample=supersample)


@dataclass
class WorldSample:
    """One sample of the world in memory: style, motion kind, speech, poses and the exact frames."""

    style: CharacterStyle
    kind: str
    audio: AudioClip
    poses: PoseSequence
    frames: np.ndarray  # (T, H, W, 3) uint8


def make_sample(seed: int, index: int, seconds: float, size: tuple[int, int] = (128, 128), fps: float = 25.0, *,
                engine: str = "auto", gesture_fraction: float = 0.3,
                supersample: int = DEFAULT_SUPERSAMPLE) -> WorldSample:
    """Sample ``index`` of the world with this seed (what :func:`make_world` writes), without touching disk."""
    H, W = (int(v) for v in size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    style = CharacterStyle.random(rng)
    ref = reference_pose(rng, H, W)
    kind = MOTION_KINDS[1] if rng.uniform() < gesture_fraction else MOTION_KINDS[0]
    clip = speech_clip(rng, seconds, SAMPLE_RATE, engine=engine)
    seq = character_motion(clip, ref, fps, rng, kind, height=H, width=W)
    frames = render_video(seq.keypoints, style, H, W, supersample=supersample)
    return WorldSample(style, kind, clip, seq, frames)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)  # readers never see a half-written index


def make_world(out_dir: str | os.PathLike, n_videos: int, seconds: float, size: tuple[int, int] = (128, 128),
               fps: float = 25.0, seed: int = 0, *, engine: str = "auto", gesture_fraction: float = 0.3,
               supersample: int = DEFAULT_SUPERSAMPLE, progress: ProgressFn | None = None,
               lossless: bool = True) -> list[dict]:
    """Write ``n_videos`` talking-character samples under ``out_dir``; return their world.json records.

    Samples already there with the same settings are kept (an interrupted run continues where it stopped).

    ``lossless`` (default) stores the exact frames (RGB H.264 at crf 0: training data); False writes ordinary
    lossy mp4 that any player shows."""
    from iasa_core.media import write_video  # imports torch: only when a world is actually written

    H, W = (int(v) for v in size)
    if n_videos < 0 or not seconds > 0 or H < 16 or W < 16 or not fps > 0:
        raise ValueError(f"make_world: expected n_videos >= 0, seconds > 0, size >= 16 and fps > 0; "
                         f"got {n_videos}, {seconds}, {size}, {fps}")
    if not 0.0 <= gesture_fraction <= 1.0:
        raise ValueError(f"make_world: gesture_fraction must be in [0, 1], got {gesture_fraction}")
    root = Path(out_dir)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "keypoints").mkdir(parents=True, exist_ok=True)
    index = {"format": WORLD_FORMAT, "version": WORLD_VERSION, "seed": int(seed), "height": H, "width": W,
             "fps": float(fps), "seconds": float(seconds), "sample_rate": SAMPLE_RATE,
             "supersample": int(supersample), "lossless": bool(lossless), "samples": []}
    records: list[dict] = _finished_samples(root, index)
    for i in range(len(records), int(n_videos)):
        t0 = time.perf_counter()
        sample = make_sample(seed, i, seconds, (H, W), fps, engine=engine, gesture_fraction=gesture_fraction,
                             supersample=supersample)
        style, kind, clip, seq, frames = sample.style, sample.kind, sample.audio, sample.poses, sample.frames
        sid = sample_id(i)
        write_video(root / "videos" / f"{sid}.mp4", frames, fps, audio=clip, lossless=lossless)
        seq.save_json(root / "keypoints" / f"{sid}.json")
        rec = {"id": sid, "video": f"videos/{sid}.mp4", "keypoints": f"keypoints/{sid}.json", "kind": kind,
               "audio": clip.source, "frames": len(seq), "style": style.to_dict(),
               "seconds_to_make": round(time.perf_counter() - t0, 3)}
        records.append(rec)
        index["samples"] = records
        _write_json(root / WORLD_FILE, index)
        if progress is not None:
            progress(i, int(n_videos), rec)
    if not records:
        _write_json(root / WORLD_FILE, index)
    return records


def _finished_samples(root: Path, index: dict) -> list[dict]:
    """The records of a world already in ``root`` made with the same settings (an interrupted run resumes)."""
    path = root / WORLD_FILE
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if any(old.get(k) != v for k, v in index.items() if k != "samples"):
        return []  # other settings: the world is written anew
    done = []
    for rec in old.get("samples", []):
        if not ((root / rec["video"]).is_file() and (root / rec["keypoints"]).is_file()):
            break
        done.append(rec)
    return done


def load_world(out_dir: str | os.PathLike) -> dict:
    """Read world.json; each sample's "style" becomes a :class:`CharacterStyle`."""
    path = Path(out_dir) / WORLD_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != WORLD_FORMAT:
        raise ValueError(f"{path}: not a synthetic world index (format {data.get('format')!r})")
    for rec in data["samples"]:
        rec["style"] = CharacterStyle.from_dict(rec["style"])
    return data


def sample_ground_truth(out_dir: str | os.PathLike, sid: str, world: dict | None = None) -> np.ndarray:
    """Exact frames of sample ``sid`` of a world, redrawn from its keypoint JSON and style."""
    world = world if world is not None else load_world(out_dir)
    rec = next((r for r in world["samples"] if r["id"] == sid), None)
    if rec is None:
        raise KeyError(f"{out_dir}: no sample {sid!r} in {WORLD_FILE}")
    seq = PoseSequence.load_json(Path(out_dir) / rec["keypoints"])
    return ground_truth(seq.keypoints, rec["style"], world["height"], world["width"],
                        supersample=world["supersample"])
