"""The dataset folder on disk: atomic shard writes, append-only JSON-lines logs, options pinning, lock.

Layout of DATASET:

- ``dataset.json``: the options (``PrepareOptions``) and format version the clips were made with;
- ``shards/<video_id>.safetensors`` (then ``<video_id>.1.safetensors``, ... when a video has more
  than ``clips_per_shard`` clips): tensors ``c{j}.frames`` uint8 (T, H, W, 3), ``c{j}.keypoints``
  float32 (T, 133, 3), ``c{j}.labels`` uint8 (T, H, W), ``c{j}.audio`` float32 (N,);
- ``manifest.jsonl``: one line per clip (see ``ClipDataset``);
- ``progress.jsonl``: one line per finished video (done or failed), appended after its shards and
  manifest lines are on disk; a resumed run skips the videos listed there;
- ``report.json``: what was kept and dropped, and why.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .options import FORMAT_VERSION, PrepareError, PrepareOptions

DATASET_JSON = "dataset.json"
MANIFEST = "manifest.jsonl"
PROGRESS = "progress.jsonl"
REPORT = "report.json"
SHARDS = "shards"
LOCK = ".prepare.lock"


def shard_name(vid: str, part: int) -> str:
    """File name of part ``part`` of a video's clips (part 0 keeps the plain name)."""
    return f"{vid}.safetensors" if part == 0 else f"{vid}.{part}.safetensors"


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_shard(path: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Write a safetensors file atomically: a crash leaves the old file or none, never half of one."""
    from safetensors.numpy import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=dict(metadata))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # safetensors creates files 0600; shards are shared data like any other output file.
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def remove_video_shards(shard_dir: Path, vid: str) -> None:
    """Delete the shards and temporary files a previous, unfinished attempt at a video left behind."""
    for p in list(shard_dir.glob(f"{vid}.safetensors")) + list(shard_dir.glob(f"{vid}.*.safetensors")) \
            + list(shard_dir.glob(f".{vid}.*.tmp")):
        p.unlink()


def append_lines(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append JSON lines and fsync, so that a line that is there is whole and on disk."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    if not text:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a torn last line (crash mid-append) is skipped."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise PrepareError(f"{path}, line {i + 1}: not valid JSON; the file is damaged. Remove that line "
                               f"(its video is then prepared again) or start a new --out") from None
        if not isinstance(rec, dict):
            raise PrepareError(f"{path}, line {i + 1}: expected a JSON object, got {type(rec).__name__}")
        out.append(rec)
    return out


def torn(path: Path) -> bool:
    """Whether a JSON-lines file ends mid-line, as a crash during an append leaves it."""
    # Such a file must be rewritten before the next append, or that line would be glued to the torn one.
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def rewrite_lines(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Replace a JSON-lines file atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def check_output_dir(out_dir: str | os.PathLike, options: PrepareOptions, create: bool = True) -> Path:
    """Check that DATASET is new or was made with the same options; with ``create``, set it up."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PrepareError(f"--out {out}: exists and is not a folder; give a folder for the dataset")
    meta_path = out / DATASET_JSON
    want = options.content()
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            have = meta["content"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise PrepareError(f"{meta_path}: damaged ({exc}); start a new --out folder") from None
        diff = {k: (have.get(k), want[k]) for k in want if have.get(k) != want[k]}
        if diff:
            lines = ", ".join(f"{k}: dataset has {a!r}, this run asks {b!r}" for k, (a, b) in sorted(diff.items()))
            raise PrepareError(f"--out {out} holds a dataset prepared with other options ({lines}). "
                               f"Re-run with the dataset's options to resume it, or give a new --out folder")
        return out
    if (out / MANIFEST).exists() or (out / PROGRESS).exists():
        raise PrepareError(f"--out {out} has {MANIFEST}/{PROGRESS} but no {DATASET_JSON}; it was not made by "
                           f"this version of training.prepare. Give a new --out folder")
    if not create:
        return out
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    meta = {"format": "iasa-clips", "version": FORMAT_VERSION, "content": want, "options": options.to_json()}
    tmp = out / f".{DATASET_JSON}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, meta_path)
    return out


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on DATASET: two runs appending to one manifest would corrupt it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the user must not run two at once
        yield
        return
    fh = open(out / LOCK, "w")  # noqa: SIM115 -- held open for the lock's lifetime
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PrepareError(f"--out {out}: another training.prepare is writing this dataset; wait for it "
                               f"to finish or give another --out") from None
        yield
    finally:
        fh.close()
