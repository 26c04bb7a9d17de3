"""Output paths checked before any work: a folder, a parent that is a file, a wrong suffix or an input.

Each command checks every path it will write first, so a bad ``--out`` costs a second, not a whole generation,
and nothing is left behind. The writers themselves stay atomic (temporary file, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# write_video always writes H.264 in an MP4 container; these names tell players so (.mov and .m4v are the same
# ISO family). An .avi or .mkv name would hold an MP4 under a false name.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")


def _folder_ok(folder: Path, name: str, path: Path) -> None:
    """The folder an output goes into is a folder that can be written, or can be made inside one.

    Missing folders are made by the writer when it writes (so a refused run leaves none behind); here the
    nearest existing one must be a folder, not a file, and writable."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name} {path}: {existing} is a file, not a folder, so {folder} cannot be made")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path}: the folder {existing} cannot be written (permission denied)")


def write_text(path: Path, text: str) -> Path:
    """Write a small text output whole or not at all, making its folder first (as write_video does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def output_file(path: str | os.PathLike, name: str, *, kind: str = "file", example: str = "out",
                inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """``path`` as a file this command can write: not a folder, in an existing folder, not one of ``inputs``."""
    text = os.fspath(path) if path is not None else ""
    if not str(text).strip():
        raise ValueError(f"{name} is empty; give the {kind} to write")
    p = Path(text).expanduser()
    if p.is_dir() or str(text).endswith(("/", os.sep)):
        raise ValueError(f"{name} {p} is a folder; give a file name inside it, e.g. {p / example}")
    _folder_ok(p.parent if str(p.parent) else Path("."), name, p)
    if p.exists() and not p.is_file():
        raise ValueError(f"{name} {p} exists and is not a regular file")
    for other in inputs:
        if other is not None and Path(other).expanduser().exists() and p.exists() and p.samefile(other):
            raise ValueError(f"{name} {p} is also an input of this command; write the output elsewhere")
    return p


def output_video(path: str | os.PathLike, name: str = "--out", inputs: Iterable[str | os.PathLike | None] = ()
                 ) -> Path:
    """An mp4 output (see :func:`output_file`) whose name says MP4."""
    out = output_file(path, name, kind="video", example="out.mp4", inputs=inputs)
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{name} {out}: the video is written as MP4 (H.264), so its name must end in "
                         f"{', '.join(VIDEO_SUFFIXES)}; e.g. {out.with_suffix(VIDEO_SUFFIXES[0])}")
    return out


def output_folder(path: str | os.PathLike, name: str) -> Path:
    """A folder to write files into: an existing folder, or a new one whose parent exists."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ValueError(f"{name} {p} exists and is not a folder")
        _folder_ok(p, name, p)
        return p
    _folder_ok(p.parent if str(p.parent) else Path("."), name, p)
    return p


def image_file(path: str | os.PathLike, name: str) -> Path:
    """An image output whose suffix Pillow can write (png, jpg, webp ...)."""
    from PIL import Image

    p = output_file(path, name, kind="image", example="preview.png")
    writable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE}
    if p.suffix.lower() not in writable:
        raise ValueError(f"{name} {p}: Pillow cannot write {p.suffix or 'a file without a suffix'}; "
                         "name it .png (or .jpg, .webp)")
    return p
