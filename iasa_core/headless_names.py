"""File names a ComfyUI server gives us (outputs to download, stored uploads), made safe to use locally.

A server is not trusted to name files: a name such as ``.``, ``..``, ``../x``, ``/etc/x``, ``C:\\x`` or one
that is not a string at all must never make the client write outside the folder the user gave, nor crash
it. Every server-given file name and subfolder goes through ``safe_parts``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_SEPARATORS = re.compile(r"[/\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_COMPONENT_BYTES = 250  # file systems allow 255; the download adds ".part" while it runs


class UnsafeName(ValueError):
    """A server-given file name or subfolder that cannot be made safe; the message says what it was."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _clean(component: str) -> str:
    # control characters would garble the log (or hide a name); ':' makes a drive or an NTFS stream on Windows
    return _CONTROL.sub("_", component).replace(":", "_")


def safe_parts(filename: object, subfolder: object = "") -> tuple[list[str], bool]:
    """The folders and name of a server-given file as plain path components, and whether any was changed.

    Either separator splits; empty, ``.`` and ``..`` components are dropped (so absolute paths become
    relative); control characters and ``:`` become ``_``. Raises UnsafeName when a value is not a string,
    when nothing names a file (``""``, ``.``, ``..``, a trailing separator) or a component is too long.
    """
    if subfolder is None:
        subfolder = ""
    for what, value in (("file name", filename), ("subfolder", subfolder)):
        if not isinstance(value, str):
            raise UnsafeName(f"the {what} {_short(value)} is not a string")
    raw = _SEPARATORS.split(subfolder) + _SEPARATORS.split(filename)
    name = raw[-1]
    if name in ("", ".", ".."):
        raise UnsafeName(f"the file name {_short(filename)} (subfolder {_short(subfolder)}) names no file")
    parts = [_clean(p) for p in raw if p not in ("", ".", "..")]
    for p in parts:
        if len(p.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT_BYTES:
            raise UnsafeName(f"the name {_short(p)} is longer than {_MAX_COMPONENT_BYTES} bytes")
    absolute = bool(_SEPARATORS.match(subfolder or filename))  # a drive ("C:") counts as cleaned below
    dropped = any(p in (".", "..") for p in raw)
    cleaned = any(_clean(p) != p for p in raw)
    return parts, absolute or dropped or cleaned


def local_path(out_dir: str | os.PathLike, filename: object, subfolder: object = "") -> tuple[Path, bool]:
    """Where a server-given file goes under ``out_dir``, and whether its name had to be changed.

    Also refuses a path that a symbolic link already inside ``out_dir`` would lead outside of it.
    """
    parts, changed = safe_parts(filename, subfolder)
    root = Path(out_dir)
    dest = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    real_dest = os.path.realpath(dest)
    if os.path.commonpath([real_root, real_dest]) != real_root or real_dest == real_root:
        raise UnsafeName(f"{'/'.join(parts)!r} would be written outside {root} (a link inside it leads out)")
    return dest, changed


def stored_name(name: object, subfolder: object, fallback: str) -> str:
    """The name a workflow uses for an uploaded file ("subfolder/name"); UnsafeName unless it is plain already.

    The server's answer is put into the prompt and shown to the user, so it is taken only when no
    sanitising was needed; ``fallback`` (the local file's name) stands in when the server gave no name."""
    parts, changed = safe_parts(name if name not in (None, "") else fallback, subfolder)
    if changed:
        raise UnsafeName(f"the server stored the upload as {_short(name)} in subfolder {_short(subfolder)}, "
                         "which is not a plain relative file name")
    return "/".join(parts)
