"""DWPose: YOLOX person boxes -> WholeBody 133 keypoints, on onnxruntime or TorchScript.

``DWPoseDetector.from_files(det_path, pose_path, device)`` loads the two networks (runtime by file
extension); ``find_dwpose_files`` finds them in given folders, then in the Hugging Face cache, and
downloads them only when allowed. Keypoints come back in COCO-WholeBody order (not the OpenPose-18
reorder that wrappers apply for drawing), x, y in pixels of the image given, raw DWPose scores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .runtime import Runtime, load_runtime
from .wholebody import NUM_KEYPOINTS, WholeBodyPose
from .yolox import YoloxDetector

log = logging.getLogger(__name__)

DET_ONNX = "yolox_l.onnx"
POSE_ONNX = "dw-ll_ucoco_384.onnx"
DET_TORCHSCRIPT = "yolox_l.torchscript.pt"
POSE_TORCHSCRIPT = "dw-ll_ucoco_384_bs5.torchscript.pt"
HF_REPO = "yzd-v/DWPose"
# Hugging Face repos of each file, as comfyui_controlnet_aux downloads them
# (node_wrappers/dwpose.py: DWPOSE_MODEL_NAME, "hr16/yolox-onnx", "hr16/DWPose-TorchScript-BatchSize5").
HF_SOURCES = {
    DET_ONNX: HF_REPO,
    POSE_ONNX: HF_REPO,
    DET_TORCHSCRIPT: "hr16/yolox-onnx",
    POSE_TORCHSCRIPT: "hr16/DWPose-TorchScript-BatchSize5",
}
_NAMES = {"det": {"onnx": DET_ONNX, "torchscript": DET_TORCHSCRIPT},
          "pose": {"onnx": POSE_ONNX, "torchscript": POSE_TORCHSCRIPT}}
CHOICES = ("largest", "central")
NO_PERSON = "no person found in {name}; use a photo where one person's upper body is visible"


# ---------------------------------------------------------------------- finding the weights


def _default_prefer(device: str) -> str:
    """ONNX first, unless no onnxruntime is installed or CUDA is asked for and it cannot use it (TorchScript)."""
    # Any build counts (onnxruntime, onnxruntime-gpu, -directml ...): they all install the same module.
    try:
        import onnxruntime as ort
    except ImportError:
        return "torchscript"
    if str(device).lower().startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "torchscript"
    return "onnx"


def _candidates(role: str, prefer: str) -> list[str]:
    order = ("onnx", "torchscript") if prefer == "onnx" else ("torchscript", "onnx")
    return [_NAMES[role][kind] for kind in order]


def _from_hf_cache(repo: str, filename: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:  # a malformed cache must not break the local search
        return None
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _download(repo: str, filename: str, download_dir: str | None) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise RuntimeError(f"downloading {filename} from {repo} needs huggingface_hub "
                           "(pip install huggingface_hub)") from exc
    log.warning("DWPose: downloading %s from https://huggingface.co/%s%s", filename, repo,
                f" into {download_dir}" if download_dir else "")
    try:
        if download_dir:
            os.makedirs(download_dir, exist_ok=True)
            return hf_hub_download(repo, filename, local_dir=download_dir)
        return hf_hub_download(repo, filename)
    except Exception as exc:
        raise RuntimeError(f"could not download {filename} from https://huggingface.co/{repo}: {exc}") from exc


def find_dwpose_files(search_dirs: Iterable[str | os.PathLike] = (), allow_download: bool = False,
                      prefer: str | None = None, device: str = "cpu",
                      download_dir: str | os.PathLike | None = None,
                      download_hint: str | None = None) -> tuple[str, str]:
    """Paths of the detector and the pose model: ``(det_path, pose_path)``.

    Looks, per file, in each folder of ``search_dirs`` (and its ``<repo id>/`` sub-folder, where
    comfyui_controlnet_aux's ``ckpts`` keeps them), then in the Hugging Face cache; downloads from
    the hub only when ``allow_download`` (into ``download_dir``, else the HF cache). ``prefer``
    ("onnx" or "torchscript") orders the two formats; by default ONNX, or TorchScript when CUDA is
    asked for and onnxruntime has no CUDA provider. Raises FileNotFoundError naming the files, the
    folders searched and the Hugging Face repos (and ``download_hint``: how this caller allows a download,
    e.g. a CLI flag; None inside ComfyUI, whose users cannot pass flags).
    """
    if prefer is None:
        prefer = _default_prefer(device)
    if prefer not in ("onnx", "torchscript"):
        raise ValueError(f"prefer: expected 'onnx' or 'torchscript', got {prefer!r}")
    dirs = [os.fspath(d) for d in search_dirs if d]
    found: dict[str, str | None] = {}
    for role in ("det", "pose"):
        found[role] = None
        names = _candidates(role, prefer)
        for name in names:
            for d in dirs:
                for p in (os.path.join(d, name), os.path.join(d, *HF_SOURCES[name].split("/"), name)):
                    if os.path.isfile(p):
                        found[role] = p
                        break
                if found[role]:
                    break
            if found[role]:
                break
        if found[role] is None:
            for name in names:
                found[role] = _from_hf_cache(HF_SOURCES[name], name)
                if found[role]:
                    break
    missing = [role for role in ("det", "pose") if found[role] is None]
    if missing and allow_download:
        target = os.fspath(download_dir) if download_dir else None
        for role in missing:
            name = _candidates(role, prefer)[0]
            found[role] = _download(HF_SOURCES[name], name, target)
        missing = []
    if missing:
        raise FileNotFoundError(missing_weights_message(dirs, [r for r in missing], download_hint))
    log.info("DWPose: detector %s, pose %s", found["det"], found["pose"])
    return found["det"], found["pose"]


def missing_weights_message(searched: Sequence[str], missing: Sequence[str] = ("det", "pose"),
                            download_hint: str | None = None) -> str:
    """What to download and where to put it; ``download_hint`` says how the caller allows a download."""
    what = {"det": f"the person detector {DET_ONNX} (or {DET_TORCHSCRIPT})",
            "pose": f"the pose model {POSE_ONNX} (or {POSE_TORCHSCRIPT})"}
    where = ", ".join(searched) if searched else "no folders given"
    target = searched[0] if searched else "ComfyUI/models/dwpose"
    return (f"DWPose weights not found: missing {' and '.join(what[m] for m in missing)}. "
            f"DWPose needs both {DET_ONNX} and {POSE_ONNX}. Searched: {where}; and the Hugging Face cache. "
            f"Download {DET_ONNX} and {POSE_ONNX} from https://huggingface.co/{HF_REPO} "
            f"(TorchScript versions: {DET_TORCHSCRIPT} from https://huggingface.co/{HF_SOURCES[DET_TORCHSCRIPT]}, "
            f"{POSE_TORCHSCRIPT} from https://huggingface.co/{HF_SOURCES[POSE_TORCHSCRIPT]}) "
            f"and put them in {target}, e.g. `hf download {HF_REPO} {DET_ONNX} {POSE_ONNX} "
            f"--local-dir {target}`" + (f"; {download_hint}." if download_hint else "."))


# ---------------------------------------------------------------------- choosing a person


def box_iou(a: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (N, 4), x1y1x2y2 (continuous areas)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    area_a = max(a[2] - a[0], 0) * max(a[3] - a[1], 0)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def choose_person(boxes: np.ndarray, height: int, width: int, choose: str = "largest",
                  tie_tolerance: float = 0.05) -> int:
    """Index of the chosen box.

    "largest": the largest box area; boxes within ``tie_tolerance`` (relative) of the largest tie,
    and the most central of them wins. "central": the box whose centre is nearest the image
    centre; ties (equal distance) go to the larger box.
    """
    if choose not in CHOICES:
        raise ValueError(f"choose: expected one of {CHOICES}, got {choose!r}")
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(b) == 0:
        raise ValueError("choose_person: no boxes")
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    dist = np.hypot(centre[:, 0] - width / 2.0, centre[:, 1] - height / 2.0)
    if choose == "largest":
        tied = np.flatnonzero(area >= area.max() * (1.0 - tie_tolerance))
        return int(tied[np.lexsort((-area[tied], dist[tied]))[0]])
    return int(np.lexsort((-area, dist))[0])


# ---------------------------------------------------------------------- images


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB from uint8/float (0..1) grey, RGB or RGBA arrays."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image: expected (H, W, 3) RGB, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and float(np.nanmax(arr)) <= 1.0 + 1e-6:
            arr = arr * 255.0
        return np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ValueError(f"image: expected uint8 or float pixels, got dtype {arr.dtype}")


# ---------------------------------------------------------------------- the detector


@dataclass
class Person:
    """One detected person: box x1y1x2y2 (image pixels), box score, keypoints (133, 3)."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray


class DWPoseDetector:
    """DWPose on one image or a video, returning COCO-WholeBody keypoints in image pixels."""

    def __init__(self, detector: YoloxDetector | Runtime, pose: WholeBodyPose | Runtime,
                 choose: str = "largest"):
        self.detector = detector if isinstance(detector, YoloxDetector) else YoloxDetector(detector)
        self.pose = pose if isinstance(pose, WholeBodyPose) else WholeBodyPose(pose)
        if choose not in CHOICES:
            raise ValueError(f"choose: expected one of {CHOICES}, got {choose!r}")
        self.choose = choose

    @classmethod
    def from_files(cls, det_path: str | os.PathLike, pose_path: str | os.PathLike, device: str = "cpu",
                   choose: str = "largest") -> DWPoseDetector:
        """Load ``yolox_l.{onnx,torchscript.pt}`` and ``dw-ll_ucoco_384*.{onnx,torchscript.pt}``."""
        return cls(load_runtime(det_path, device), load_runtime(pose_path, device), choose=choose)

    @classmethod
    def from_search(cls, search_dirs: Iterable[str | os.PathLike] = (), device: str = "cpu",
                    allow_download: bool = False, prefer: str | None = None,
                    download_dir: str | os.PathLike | None = None, choose: str = "largest") -> DWPoseDetector:
        """``find_dwpose_files`` then ``from_files``."""
        det, pose = find_dwpose_files(search_dirs, allow_download=allow_download, prefer=prefer,
                                      device=device, download_dir=download_dir)
        return cls.from_files(det, pose, device=device, choose=choose)

    def detect_all(self, image: np.ndarray) -> list[Person]:
        """Every person above the box threshold, best box score first (empty list when none)."""
        img = as_rgb_uint8(image)
        boxes, scores = self.detector(img)
        if len(boxes) == 0:
            return []
        kps = self.pose(img, boxes)
        return [Person(box=boxes[i].astype(np.float32), score=float(scores[i]), keypoints=kps[i])
                for i in range(len(boxes))]

    def detect(self, image: np.ndarray, name: str = "the image", choose: str | None = None) -> np.ndarray:
        """Keypoints (133, 3) of the chosen person; ValueError when nobody is found."""
        img = as_rgb_uint8(image)
        boxes, _ = self.detector(img)
        if len(boxes) == 0:
            raise ValueError(NO_PERSON.format(name=name))
        i = choose_person(boxes, img.shape[0], img.shape[1], choose or self.choose)
        return self.pose(img, boxes[i:i + 1])[0]

    def detect_video(self, frames: Iterable[np.ndarray] | np.ndarray,
                     progress: Callable[[int, int], None] | None = None, name: str = "the video",
                     choose: str | None = None, track: bool = True, min_track_iou: float = 0.1) -> np.ndarray:
        """Keypoints (T, 133, 3) of one person through a video.

        The first frame with people picks by ``choose``; with ``track`` later frames take the box
        that overlaps the previous choice most (IoU >= ``min_track_iou``), else ``choose`` again.
        A frame without a person is all zeros (score 0); ValueError if no frame has one.
        ``progress(done, total)`` is called after every frame.
        """
        rule = choose or self.choose
        total = len(frames) if hasattr(frames, "__len__") else 0
        out: list[np.ndarray] = []
        prev: np.ndarray | None = None
        empty = 0
        for t, frame in enumerate(frames):
            img = as_rgb_uint8(frame)
            boxes, _ = self.detector(img)
            if len(boxes) == 0:
                out.append(np.zeros((NUM_KEYPOINTS, 3), np.float32))
                empty += 1
            else:
                i = None
                if track and prev is not None:
                    iou = box_iou(prev, boxes)
                    if iou.max() >= min_track_iou:
                        i = int(iou.argmax())
                if i is None:
                    i = choose_person(boxes, img.shape[0], img.shape[1], rule)
                prev = boxes[i].astype(np.float64)
                out.append(self.pose(img, boxes[i:i + 1])[0])
            if progress is not None:
                progress(t + 1, total or t + 1)
        if not out:
            raise ValueError(f"{name}: no frames")
        if empty == len(out):
            raise ValueError(NO_PERSON.format(name=name))
        if empty:
            log.warning("DWPose: no person in %d of %d frames of %s (left as zeros)", empty, len(out), name)
        return np.stack(out)
