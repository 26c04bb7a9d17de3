"""Small library helpers behind the ComfyUI nodes (and reachable from the CLI and tests).

The node layer only converts ComfyUI types (IMAGE tensors, AUDIO dicts, POSE_KEYPOINT lists) and
calls these; anything that decides or computes lives here. Nothing here imports ComfyUI.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .pose.regions import DEFAULT_MIN_SCORE
from .pose.sequence import POSE_KEYPOINT_FORM, PoseSequence

DEFAULT_FPS = 25.0
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Sparse settings a plan may carry into sampling (PlanConfig fields the pipeline reads).
PLAN_OPTION_KEYS = ("top_k", "block_size", "mode")
PLAN_STORED_KEYS = ("regions", "local", "sink_first", "causal")


# ---------------------------------------------------------------------- POSE_KEYPOINT


def pose_keypoint_fps(frames: Any, default: float | None = DEFAULT_FPS) -> float | None:
    """The frame rate stored with a POSE_KEYPOINT list (our "fps" key), else ``default``."""
    if isinstance(frames, Mapping):
        frames = [frames]
    if isinstance(frames, Sequence) and not isinstance(frames, (str, bytes)):
        for frame in frames:
            if isinstance(frame, Mapping) and frame.get("fps") is not None:
                fps = frame["fps"]
                try:
                    fps = float(fps)
                except (TypeError, ValueError):
                    raise ValueError(f"POSE_KEYPOINT: the 'fps' key must be a number, got {fps!r}") from None
                if not math.isfinite(fps) or fps <= 0:
                    raise ValueError(f"POSE_KEYPOINT: the 'fps' key must be a positive number, got {fps!r}")
                return fps
    return default


def sequence_from_pose_keypoint(frames: Any, fps: float | None = None, name: str = "poses") -> PoseSequence:
    """A PoseSequence from a POSE_KEYPOINT list; fps from the frames' "fps" key, else ``fps``, else 25."""
    if frames is None:
        raise ValueError(f"{name}: nothing connected; expected {POSE_KEYPOINT_FORM}")
    rate = pose_keypoint_fps(frames, None)
    if rate is None:
        rate = float(fps) if fps else DEFAULT_FPS
    try:
        return PoseSequence.from_pose_keypoint(frames, fps=rate)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def to_pose_keypoint(seq: PoseSequence, min_score: float = DEFAULT_MIN_SCORE) -> list[dict]:
    """POSE_KEYPOINT (pixels) in the score convention other packs read, with our "fps" key in every frame.

    comfyui_controlnet_aux (its decode_json_as_poses) keeps a point only when its confidence is at least 1.0
    and writes 1.0 / (0, 0, 0) itself, so detector scores (0.3 .. 0.99) drew nothing there: a point at or
    above ``min_score`` (what our renderer and sparse plans use) is written with confidence 1.0, any other
    as (0, 0, 0). Our own readers treat every confidence above 0 as present, so they see the same points.
    """
    kp = np.array(seq.keypoints, dtype=np.float32, copy=True)
    shown = (kp[..., 2] > 0) & (kp[..., 2] >= min_score)
    kp[..., 2] = shown.astype(np.float32)
    kp[~shown] = 0.0
    frames = PoseSequence(kp, seq.height, seq.width, seq.fps).to_pose_keypoint()
    for frame in frames:
        frame["fps"] = seq.fps
    return frames


def reference_from_pose_keypoint(frames: Any, name: str = "reference_pose") -> tuple[np.ndarray, int, int]:
    """(keypoints (133, 3) in pixels, canvas height, canvas width) of the first frame of a POSE_KEYPOINT.

    Any producer's list works (ours, comfyui_controlnet_aux's, normalised or pixel coordinates).
    """
    if isinstance(frames, Mapping):
        frames = [frames]
    if isinstance(frames, Sequence) and not isinstance(frames, (str, bytes)) and len(frames) > 0:
        frames = [frames[0]]
    seq = sequence_from_pose_keypoint(frames, name=name)
    kp = seq.keypoints[0]
    if not (kp[:, 2] > 0).any():
        raise ValueError(f"{name}: the first frame holds no person (no keypoint with a score above 0); "
                         "use a pose detected on a photo where one person's upper body is visible")
    return kp, seq.height, seq.width


def load_poses_file(path: str | os.PathLike, default_fps: float = DEFAULT_FPS) -> PoseSequence:
    """A POSE_KEYPOINT JSON file; its own fps when it stores one, else ``default_fps``."""
    from .validate import fps as check_fps

    default_fps = check_fps(default_fps, "fps")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pose file {os.fspath(path)} does not exist; expected {POSE_KEYPOINT_FORM} (JSON)")
    file_fps = None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if isinstance(data, Mapping) and data.get("fps") is not None:
            file_fps = float(data["fps"])
        elif isinstance(data, Mapping) and isinstance(data.get("frames"), list):
            file_fps = pose_keypoint_fps(data["frames"], None)
        else:
            file_fps = pose_keypoint_fps(data, None)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError):
        pass  # load_json below reports the problem with its own message
    return PoseSequence.load_json(path, fps=file_fps if file_fps is not None else float(default_fps))


def render_size(seq: PoseSequence, width: int, height: int) -> tuple[int, int]:
    """(height, width) to draw at: 0 means the poses' canvas; one side 0 keeps the canvas' aspect ratio."""
    width, height = int(width), int(height)
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be >= 0 (0 = the poses' canvas); got {width}x{height}")
    if width == 0 and height == 0:
        return seq.height, seq.width
    if width == 0:
        return height, max(1, round(height * seq.width / seq.height))
    if height == 0:
        return max(1, round(width * seq.height / seq.width)), width
    return height, width


# ---------------------------------------------------------------------- sparse plans


def plan_keypoints(seq: PoseSequence, frames: int = 0) -> PoseSequence:
    """The poses a plan of ``frames`` video frames covers: the first ``frames`` (4n+1), or all of them
    padded to 4n+1 (as the pipeline pads) when ``frames`` is 0 or more than there are."""
    from .pipeline import pad_to_4n1

    frames = int(frames)
    if frames < 0 or (frames > 0 and (frames - 1) % 4):
        raise ValueError(f"frames must be 0 (all poses) or 4n+1 (1, 5, ..., 77, 81: the Wan VAE packs frame 0 "
                         f"alone, then groups of 4); got {frames}")
    kp = seq.keypoints
    if 0 < frames <= len(kp):
        kp = kp[:frames]
    else:
        kp = pad_to_4n1(kp)
    return PoseSequence(kp, seq.height, seq.width, seq.fps)


def plan_for_poses(seq: PoseSequence, height: int, width: int, frames: int = 0, top_k: int = 2,
                   block_size: int = 128, mode: str = "exact", **options):
    """The IASA plan for a pose sequence at height x width (keypoints rescaled from the poses' canvas,
    which must have the same aspect ratio); ``frames`` as in :func:`plan_keypoints`."""
    from .sparse.plan import build_plan

    part = plan_keypoints(seq, frames)
    return build_plan(part, (int(height), int(width)), num_frames=len(part), top_k=int(top_k),
                      block_size=int(block_size), mode=mode, **options)


def apply_plan_settings(system, options, settings: Mapping[str, Any] | None):
    """(system, options) with a plan's sparse settings applied, neither argument changed.

    top_k, block_size and mode go into the GenerateOptions; regions, local, sink_first and causal
    replace the model's stored sparse settings in a shallow copy of the system (same modules).
    """
    if not settings:
        return system, options
    from .pipeline import plan_options

    settings = {k: v for k, v in dict(settings).items() if v is not None}
    plan_options(settings)  # unknown keys are an error, not ignored
    opt = dataclasses.replace(options, **{k: settings[k] for k in PLAN_OPTION_KEYS if k in settings})
    stored = {k: settings[k] for k in PLAN_STORED_KEYS if k in settings}
    if stored:
        if "regions" in stored:
            stored["regions"] = list(stored["regions"])
        system = dataclasses.replace(system, sparse={**system.sparse, **stored})
    return system, opt


# ---------------------------------------------------------------------- devices and dtypes


def pick_device(name: str, default: torch.device | str | None = None) -> torch.device:
    """"auto" -> ``default`` (the host's device, e.g. ComfyUI's) or CUDA when available; else the named one."""
    name = str(name or "auto")
    if name == "auto":
        if default is not None:
            return torch.device(default)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but this PyTorch has no CUDA device; choose 'cpu' or 'auto'")
    return device


NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The first CPU's feature flags from a Linux cpuinfo file (empty where there is none)."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (x86 AMX-BF16 or AVX512-BF16).

    Without it PyTorch emulates bf16 on CPU, slower than float32. ``cpu_has_native_bf16.cache_clear()`` resets it.
    """
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def fast_bf16(device: torch.device | str) -> bool:
    """Whether bfloat16 is the quicker dtype on ``device`` (CUDA, or a CPU with native bf16)."""
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16())


def pick_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """"auto" -> bfloat16 on CUDA and on CPUs with native bf16, float32 elsewhere; else the named dtype."""
    if name in (None, "", "auto"):
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}; got {name!r}")
    return DTYPES[name]


# ---------------------------------------------------------------------- DWPose detector cache

_DETECTORS: dict[tuple[str, str, str], Any] = {}


def cached_detector(search_dirs: Sequence[str | os.PathLike], device: str = "cpu"):
    """A DWPoseDetector for the weights found in ``search_dirs`` (no downloads), reused while the
    files and the device stay the same; :func:`clear_detector_cache` drops them."""
    from .detect.dwpose import DWPoseDetector, find_dwpose_files

    det, pose = find_dwpose_files(list(search_dirs), allow_download=False, device=str(device))
    key = (os.path.abspath(det), os.path.abspath(pose), str(device))
    if key not in _DETECTORS:
        _DETECTORS[key] = DWPoseDetector.from_files(det, pose, device=str(device))
    return _DETECTORS[key]


def clear_detector_cache() -> None:
    """Forget every cached DWPose detector."""
    _DETECTORS.clear()
