"""A pose video as COCO-WholeBody keypoints, converted both ways to ComfyUI's POSE_KEYPOINT."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import layout as L

POSE_KEYPOINT_FORM = "a POSE_KEYPOINT list: one {people: [...], canvas_width, canvas_height} dict per frame"



class MissingCanvasError(ValueError):
    """A POSE_KEYPOINT without canvas_width/canvas_height and no size given (callers name their own flags)."""


BODY_KEY = "pose_keypoints_2d"
FACE_KEY = "face_keypoints_2d"
LEFT_HAND_KEY = "hand_left_keypoints_2d"
RIGHT_HAND_KEY = "hand_right_keypoints_2d"
FOOT_KEY = "foot_keypoints_2d"

# WholeBody index ranges written under each non-body key, in the order they are written.
_PART_KEYS = (
    (FACE_KEY, L.FACE),
    (LEFT_HAND_KEY, L.LEFT_HAND),
    (RIGHT_HAND_KEY, L.RIGHT_HAND),
    (FOOT_KEY, L.FEET),
)
# Point counts a producer may write; OpenPose's face has two extra pupil points (68, 69).
_ACCEPTED_POINTS = {FACE_KEY: (68, 70), LEFT_HAND_KEY: (21,), RIGHT_HAND_KEY: (21,), FOOT_KEY: (6,)}

_OP18_BODY = tuple(i for i, wb in enumerate(L.OPENPOSE18_FROM_WHOLEBODY) if wb is not None)
_OP18_TO_WB = np.array([L.OPENPOSE18_FROM_WHOLEBODY[i] for i in _OP18_BODY], dtype=np.int64)
_OP18_SRC = np.array(_OP18_BODY, dtype=np.int64)

# On a canvas this small, pixel coordinates themselves lie in [0, 1] and cannot be told apart from
# normalised ones, so they are left as pixels. On larger canvases a frame whose present coordinates
# all fit in [0, 1] is taken to be normalised (a pixel frame that small would be degenerate anyway).
_MIN_CANVAS_FOR_NORMALISED = 2
_FRAMES_PER_WRITE = 256


@dataclass
class PoseSequence:
    """T frames of 133 COCO-WholeBody keypoints (x, y in pixels, score) on an H x W canvas."""

    keypoints: np.ndarray
    height: int
    width: int
    fps: float = 25.0

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints)
        if kp.ndim != 3 or kp.shape[1:] != (L.NUM_KEYPOINTS, 3):
            raise ValueError(
                f"PoseSequence.keypoints: expected shape (T, {L.NUM_KEYPOINTS}, 3), got {kp.shape}")
        if kp.shape[0] < 1:
            raise ValueError("PoseSequence.keypoints: expected at least one frame, got T=0")
        if not np.issubdtype(kp.dtype, np.number) and kp.dtype != np.bool_:
            raise ValueError(f"PoseSequence.keypoints: expected numbers, got dtype {kp.dtype}")
        kp = np.array(kp, dtype=np.float32, copy=True)
        if not np.isfinite(kp).all():
            bad = np.argwhere(~np.isfinite(kp))[0]
            raise ValueError(
                "PoseSequence.keypoints: expected finite values, got "
                f"{kp[tuple(bad)]} at frame {bad[0]}, point {bad[1]}, channel {bad[2]}")
        # One spelling of "missing" (0, 0, 0) keeps round-trips exact and lets consumers test the
        # score alone; coordinates of an undetected point carry no information anyway.
        kp[kp[..., 2] <= 0] = 0.0
        self.keypoints = kp

        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"PoseSequence.{name}: expected a positive integer (pixels), got {value!r}")
            setattr(self, name, int(value))
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) \
                or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"PoseSequence.fps: expected a positive finite number, got {fps!r}")
        self.fps = float(fps)

    def __len__(self) -> int:
        """Number of frames T."""
        return int(self.keypoints.shape[0])

    # ------------------------------------------------------------------ to POSE_KEYPOINT

    def to_pose_keypoint(self, normalized: bool = False) -> list[dict]:
        """Return ComfyUI POSE_KEYPOINT: one OpenPose-JSON dict per frame (one person)."""
        return list(self.iter_pose_keypoint(normalized))

    def iter_pose_keypoint(self, normalized: bool = False) -> Iterator[dict]:
        """``to_pose_keypoint``'s frames one at a time (a long video's dicts take far more memory than its array)."""
        scale = np.array([self.width, self.height], dtype=np.float64) if normalized else None
        for t in range(len(self)):
            # float64 so that x / W * W comes back to the same float32 on the way in.
            pts = self.keypoints[t].astype(np.float64)
            if not (pts[:, 2] > 0).any():
                yield {"people": [], "canvas_width": self.width, "canvas_height": self.height}
                continue
            person = {BODY_KEY: _flatten(_openpose18_body(pts), scale)}
            for key, idx in _PART_KEYS:
                person[key] = _flatten(pts[list(idx)], scale)
            yield {"people": [person], "canvas_width": self.width, "canvas_height": self.height}

    # ------------------------------------------------------------------ from POSE_KEYPOINT

    @classmethod
    def from_pose_keypoint(cls, frames: Sequence[Mapping[str, Any]] | Mapping[str, Any], fps: float = 25.0,
                           height: int | None = None, width: int | None = None,
                           person: int = 0) -> PoseSequence:
        """Build a sequence from a POSE_KEYPOINT list (or one frame dict), picking one person."""
        if isinstance(frames, Mapping):
            frames = [frames]
        if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence):
            raise ValueError(f"POSE_KEYPOINT: expected {POSE_KEYPOINT_FORM}, got {type(frames).__name__}")
        if len(frames) == 0:
            raise ValueError(f"POSE_KEYPOINT: expected at least one frame ({POSE_KEYPOINT_FORM}), got []")
        if isinstance(person, bool) or not isinstance(person, (int, np.integer)) or person < 0:
            raise ValueError(f"person: expected a non-negative integer index, got {person!r}")
        for i, frame in enumerate(frames):
            if not isinstance(frame, Mapping):
                raise ValueError(
                    f"POSE_KEYPOINT frame {i}: expected a dict with 'people', 'canvas_width', "
                    f"'canvas_height', got {type(frame).__name__}")

        H, W = _canvas(frames, height, width)
        kp = np.zeros((len(frames), L.NUM_KEYPOINTS, 3), dtype=np.float64)
        for i, frame in enumerate(frames):
            people = frame.get("people")
            if people is None:
                continue
            if not isinstance(people, Sequence) or isinstance(people, (str, bytes)):
                raise ValueError(f"POSE_KEYPOINT frame {i}, 'people': expected a list of person dicts, "
                                 f"got {type(people).__name__}")
            # A person not detected in this frame is a gap in the video, not a malformed input.
            if person >= len(people):
                continue
            entry = people[person]
            if not isinstance(entry, Mapping):
                raise ValueError(f"POSE_KEYPOINT frame {i}, person {person}: expected a dict, "
                                 f"got {type(entry).__name__}")
            pts = _parse_person(entry, i)
            present = pts[:, 2] > 0
            if present.any() and max(W, H) > _MIN_CANVAS_FOR_NORMALISED:
                xy = pts[present, :2]
                if xy.min() >= 0.0 and xy.max() <= 1.0:
                    pts[:, 0] *= W
                    pts[:, 1] *= H
            kp[i] = pts
        return cls(keypoints=kp.astype(np.float32), height=H, width=W, fps=fps)

    # ------------------------------------------------------------------ files

    def save_json(self, path: str | os.PathLike) -> None:
        """Write the POSE_KEYPOINT list (pixels) with an extra "fps" key in every frame."""
        # Written next to the target and renamed: an interrupted write never leaves half a file under the name.
        tmp = f"{os.fspath(path)}.{os.getpid()}.partial"
        parent = os.path.dirname(os.fspath(path))
        if parent:
            os.makedirs(parent, exist_ok=True)  # as write_video does
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("[")
                # The text json.dumps(list) gives, a few hundred frames at a time: the whole list of dicts
                # and its text took 0.5 GB for 10 minutes. dumps uses the C encoder; dump() the slow Python one.
                batch: list[str] = []
                for i, frame in enumerate(self.iter_pose_keypoint()):
                    frame["fps"] = self.fps
                    batch.append(json.dumps(frame))
                    if len(batch) == _FRAMES_PER_WRITE or i == len(self) - 1:
                        fh.write((", " if i >= len(batch) else "") + ", ".join(batch))
                        batch = []
                fh.write("]")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load_json(cls, path: str | os.PathLike, fps: float | None = None) -> PoseSequence:
        """Read a POSE_KEYPOINT JSON file (list, {"frames": [...]}, or one frame dict)."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"{os.fspath(path)}: no such file; expected {POSE_KEYPOINT_FORM}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{os.fspath(path)}: not valid JSON ({exc}); expected {POSE_KEYPOINT_FORM}") from exc

        file_fps = None
        if isinstance(data, dict) and "frames" in data:
            file_fps = data.get("fps")
            data = data["frames"]
        elif isinstance(data, dict) and ("people" in data or "canvas_width" in data):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(f, dict) for f in data):
            raise ValueError(f"{os.fspath(path)}: expected {POSE_KEYPOINT_FORM}, got {_describe(data)}")
        if file_fps is None:
            file_fps = next((f["fps"] for f in data if f.get("fps") is not None), None)
        chosen = fps if fps is not None else (file_fps if file_fps is not None else 25.0)
        try:
            return cls.from_pose_keypoint(data, fps=chosen)
        except MissingCanvasError as exc:
            raise MissingCanvasError(f"{os.fspath(path)}: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from exc


# ---------------------------------------------------------------------- helpers


def _openpose18_body(pts: np.ndarray) -> np.ndarray:
    """OpenPose-18 body (18, 3) from WholeBody points (133, 3), with the derived neck."""
    body = np.zeros((18, 3), dtype=np.float64)
    body[_OP18_SRC] = pts[_OP18_TO_WB]
    ls, rs = pts[L.L_SHOULDER], pts[L.R_SHOULDER]
    if ls[2] > 0 and rs[2] > 0:
        body[L.OPENPOSE_NECK] = [(ls[0] + rs[0]) / 2.0, (ls[1] + rs[1]) / 2.0, min(ls[2], rs[2])]
    return body


def _flatten(pts: np.ndarray, scale: np.ndarray | None) -> list[float]:
    """[x, y, c] * N as plain floats; missing points as 0, 0, 0."""
    out = np.array(pts, dtype=np.float64, copy=True)
    out[out[:, 2] <= 0] = 0.0
    if scale is not None:
        out[:, :2] /= scale
    return [float(v) for v in out.reshape(-1)]


def _canvas(frames: Sequence[Mapping[str, Any]], height: int | None, width: int | None) -> tuple[int, int]:
    """Canvas (H, W) from the first frame that states it, else the arguments."""
    for i, frame in enumerate(frames):
        h, w = frame.get("canvas_height"), frame.get("canvas_width")
        if h is not None and w is not None:
            try:
                H, W = int(h), int(w)
            except (TypeError, ValueError):
                raise ValueError(f"POSE_KEYPOINT frame {i}: expected integer canvas_height/canvas_width, "
                                 f"got {h!r}/{w!r}") from None
            if H <= 0 or W <= 0:
                raise ValueError(f"POSE_KEYPOINT frame {i}: expected positive canvas_height/canvas_width, "
                                 f"got {H}/{W}")
            return H, W
    if height is None or width is None:
        raise MissingCanvasError("POSE_KEYPOINT: no frame has canvas_height/canvas_width; pass height= and width= "
                         f"(canvas size in pixels), got height={height!r}, width={width!r}")
    return int(height), int(width)


def _values(entry: Mapping[str, Any], key: str, frame: int, allowed: tuple[int, ...]) -> np.ndarray | None:
    """The key's numbers as (N, 3), None when absent; N must be one of ``allowed``."""
    raw = entry.get(key)
    if raw is None or (isinstance(raw, Sequence) and len(raw) == 0):
        return None
    try:
        arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"POSE_KEYPOINT frame {frame}, '{key}': expected a flat list of numbers "
                         f"[x, y, c] * N, got {_describe(raw)}") from None
    if arr.size not in tuple(3 * n for n in allowed):
        expected = " or ".join(f"{3 * n} ({n} points x 3)" for n in allowed)
        raise ValueError(f"POSE_KEYPOINT frame {frame}, '{key}': expected length {expected}, got {arr.size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"POSE_KEYPOINT frame {frame}, '{key}': expected finite numbers, got NaN or inf")
    return arr.reshape(-1, 3)


def _parse_person(entry: Mapping[str, Any], frame: int) -> np.ndarray:
    """One OpenPose-JSON person dict as WholeBody (133, 3) in the file's own units."""
    pts = np.zeros((L.NUM_KEYPOINTS, 3), dtype=np.float64)
    body = _values(entry, BODY_KEY, frame, (18, 17))
    if body is not None:
        if len(body) == 18:
            # The neck is dropped: WholeBody has no such point, and it is re-derived on output.
            pts[_OP18_TO_WB] = body[_OP18_SRC]
        else:
            pts[list(L.BODY)] = body
    for key, idx in _PART_KEYS:
        part = _values(entry, key, frame, _ACCEPTED_POINTS[key])
        if part is not None:
            pts[list(idx)] = part[: len(idx)]
    pts[pts[:, 2] <= 0] = 0.0
    return pts


def _describe(value: Any) -> str:
    """Short type description for error messages (no huge reprs)."""
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))[:6]}"
    return type(value).__name__
