"""Reading a prepared dataset: ``ClipDataset`` (a torch Dataset over manifest.jsonl) and ``collate_clips``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from . import store
from .options import FORMAT_VERSION

TENSOR_NAMES = ("frames", "keypoints", "labels", "audio")
REQUIRED_FIELDS = ("clip_id", "shard", "key", "num_frames", "height", "width", "fps", "audio_rate")
PREPARE_HINT = "prepare one with `python -m training.prepare --videos DIR --out DATASET`"


class DatasetError(ValueError):
    """A dataset folder that cannot be read, with what is wrong and what to do."""


class ClipDataset(Dataset):
    """Clips of a folder written by ``python -m training.prepare``.

    Item ``i`` is a dict: "frames" uint8 (T, H, W, 3), "keypoints" float32 (T, 133, 3) in the
    frames' pixels, "labels" uint8 (T, H, W) (0 background, 1 face, 2 hands, 3 arms, 4 body),
    "audio" float32 (N,) mono at ``audio_rate`` covering the clip, "clip_id" str. Shards are opened
    per access (memory-mapped by safetensors), so the dataset pickles cheaply into DataLoader workers.
    """

    def __init__(self, root: str | Path, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        self.root = Path(root)
        self.transform = transform
        manifest = self.root / store.MANIFEST
        if not self.root.is_dir():
            raise DatasetError(f"dataset {self.root}: no such folder; {PREPARE_HINT}")
        if not manifest.is_file():
            raise DatasetError(f"dataset {self.root}: no {store.MANIFEST}; it is not a prepared dataset "
                               f"(or preparation has not finished a video yet); {PREPARE_HINT}")
        meta_path = self.root / store.DATASET_JSON
        self.info: dict[str, Any] = {}
        if meta_path.is_file():
            self.info = json.loads(meta_path.read_text(encoding="utf-8"))
            if self.info.get("version") != FORMAT_VERSION:
                raise DatasetError(f"dataset {self.root}: format version {self.info.get('version')!r}, this code "
                                   f"reads version {FORMAT_VERSION}; prepare it again with this version")
        try:
            self.clips = store.read_lines(manifest)
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        if not self.clips:
            raise DatasetError(f"dataset {self.root}: {store.MANIFEST} lists no clips; see report.json for why "
                               f"frames were dropped, or {PREPARE_HINT}")
        for n, rec in enumerate(self.clips):
            missing = [k for k in REQUIRED_FIELDS if k not in rec]
            if missing:
                raise DatasetError(f"{manifest}, line {n + 1}: missing {missing}; the manifest is damaged, "
                                   f"prepare the dataset again")
        self._check_shards()

    def _check_shards(self) -> None:
        """Open every shard once (its header only) so a missing, truncated or incomplete one stops the run now.

        Found only when first sampled, a damaged shard would end a long run hours in, or never show in a short one.
        """
        from safetensors import SafetensorError, safe_open

        by_shard: dict[str, list[dict[str, Any]]] = {}
        for rec in self.clips:
            by_shard.setdefault(rec["shard"], []).append(rec)
        for shard, recs in by_shard.items():
            path = self.root / shard
            if not path.is_file():
                raise DatasetError(self._rebuild(shard, recs, "is missing"))
            try:
                # safetensors checks the header against the file's size: a truncated file fails here
                with safe_open(str(path), framework="pt") as fh:
                    keys = set(fh.keys())
            except (SafetensorError, OSError) as exc:
                raise DatasetError(self._rebuild(shard, recs, f"is damaged or truncated ({exc})")) from None
            absent = [f"{rec['key']}.{name}" for rec in recs for name in TENSOR_NAMES
                      if f"{rec['key']}.{name}" not in keys]
            if absent:
                raise DatasetError(self._rebuild(shard, recs, f"lacks tensors {absent[:4]}"))

    def _rebuild(self, shard: str, recs: list[dict[str, Any]], problem: str) -> str:
        """The message for a shard that cannot be read: which clips and videos, and how to make it again."""
        videos = sorted({str(r.get("video")) for r in recs})
        return (f"dataset {self.root}: shard {shard} (clips {', '.join(r['clip_id'] for r in recs[:3])}"
                f"{', ...' if len(recs) > 3 else ''}) {problem}. Delete the lines of video {', '.join(videos[:3])} "
                f"from {store.PROGRESS} and run training.prepare again with the same options to rebuild it")

    def __len__(self) -> int:
        """Number of clips."""
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One clip's tensors (see the class docstring)."""
        from safetensors import SafetensorError, safe_open

        rec = self.clips[index]
        path = self.root / rec["shard"]
        if not path.is_file():
            raise DatasetError(f"dataset {self.root}: shard {rec['shard']} of clip {rec['clip_id']} is missing. "
                               f"Delete the line of video {rec.get('video')!r} from {store.PROGRESS} and run "
                               f"training.prepare again with the same options to rebuild it")
        out: dict[str, Any] = {}
        try:
            with safe_open(str(path), framework="pt") as fh:
                for name in TENSOR_NAMES:
                    out[name] = fh.get_tensor(f"{rec['key']}.{name}")
        except (SafetensorError, OSError) as exc:
            raise DatasetError(f"dataset {self.root}: shard {rec['shard']} cannot be read for clip "
                               f"{rec['clip_id']} ({exc}); rebuild it as for a missing shard") from None
        out["clip_id"] = rec["clip_id"]
        return self.transform(out) if self.transform is not None else out


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips into a batch: tensors gain a leading batch axis, "clip_id" becomes a list."""
    if not items:
        raise ValueError("collate_clips: empty batch")
    batch: dict[str, Any] = {}
    for name, first in items[0].items():
        values = [it[name] for it in items]
        if not isinstance(first, torch.Tensor):
            batch[name] = values
            continue
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            detail = ", ".join(f"{it.get('clip_id', i)}: {tuple(it[name].shape)}" for i, it in enumerate(items))
            raise ValueError(f"collate_clips: '{name}' differs in shape across the batch ({detail}); clips of one "
                             f"batch need the same size: use one dataset (one --size/--frames) or batch size 1")
        batch[name] = torch.stack(values)
    return batch
