"""Find model files and folders: an explicit path, then local folders, then the HF cache, then
(only when allowed) the Hugging Face Hub.

Nothing here loads weights or code; ``trust_remote_code`` is never involved.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["resolve_model_file", "resolve_model_dir"]

_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _find_in_dir(directory: Path, name: str) -> Path | None:
    """The file `name` directly under `directory`, else the first match in its subfolders."""
    direct = directory / name
    if direct.is_file():
        return direct
    base = Path(name).name
    # ComfyUI lists files of model folders recursively, so users keep models in subfolders.
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs.sort()
        if base in files:
            return Path(root) / base
    return None


def _from_hf_cache(repo: str, filename: str, cache_dir: str | os.PathLike | None) -> Path | None:
    """The cached copy of a Hub file, without touching the network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    # Returns a path string when cached, None or a "known missing" sentinel otherwise.
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def _hf_cache_label(cache_dir: str | os.PathLike | None) -> str:
    """Where the HF cache lives, for messages."""
    if cache_dir is not None:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_model_file(
    name_or_path: str | os.PathLike,
    *,
    search_dirs: Iterable[str | os.PathLike] = (),
    hf_repo: str | None = None,
    hf_filename: str | None = None,
    allow_download: bool = False,
    what: str = "model",
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Find one model file locally (path, search_dirs, HF cache) or download it when allowed."""
    if not str(name_or_path).strip():
        raise ValueError(f"No file name given for the {what}: pass a file name or a path.")
    given = Path(name_or_path).expanduser()
    if given.is_file():
        return given
    name = str(name_or_path)
    # the name itself was tried as a path first: say where (a relative one from the current folder)
    searched = [str(given) if given.is_absolute() else f"{given} (from the current folder {Path.cwd()})"]
    dirs = [Path(d).expanduser() for d in search_dirs]
    for d in dirs:
        searched.append(str(d) if d.is_dir() else f"{d} (does not exist)")
        if d.is_dir():
            hit = _find_in_dir(d, name)
            if hit is not None:
                return hit
    filename = hf_filename or given.name
    if hf_repo:
        searched.append(f"Hugging Face cache {_hf_cache_label(cache_dir)} ({hf_repo}/{filename})")
        hit = _from_hf_cache(hf_repo, filename, cache_dir)
        if hit is not None:
            return hit
        if allow_download:
            return _download_file(hf_repo, filename, cache_dir, what)
    raise FileNotFoundError(_not_found_message(what, name, searched, dirs, hf_repo, filename))


def _download_file(repo: str, filename: str, cache_dir: str | os.PathLike | None, what: str) -> Path:
    """Download one file from the Hub, turning failures into a plain message."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, cache_dir=cache_dir))
    except Exception as exc:  # network, auth, 404: all mean "not available"
        raise FileNotFoundError(
            f"The {what} file {filename!r} is not available locally and downloading it from "
            f"the Hugging Face repo {repo!r} failed: {type(exc).__name__}: {exc}. "
            "Check the repo id, your network and (for gated repos) your token, or download "
            "the file yourself and pass its path."
        ) from exc


def _not_found_message(
    what: str, name: str, searched: list[str], dirs: list[Path], hf_repo: str | None, filename: str
) -> str:
    """The 'not found' message: the file, every place searched and how to fix it."""
    places = "; ".join(searched) if searched else "nowhere (no folders were given)"
    fixes = []
    if dirs:
        fixes.append(f"put {Path(name).name!r} in one of these folders: {', '.join(map(str, dirs))}")
    fixes.append("pass the full path to the file")
    if hf_repo:
        fixes.append(f"allow downloading to fetch it from the Hugging Face repo {hf_repo!r}")
    else:
        fixes.append("give a Hugging Face repo id and allow downloading")
    return f"The {what} file {name!r} was not found. Searched: {places}. To fix: " + ", or ".join(fixes) + "."


def resolve_model_dir(
    repo_id_or_path: str | os.PathLike,
    *,
    allow_download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    what: str = "model",
) -> Path:
    """Find a diffusers-format folder: an existing folder, else an HF repo (cache first, network if allowed)."""
    text = str(repo_id_or_path)
    if not text.strip():
        raise ValueError(f"No folder or repo id given for the {what}.")
    given = Path(text).expanduser()
    if given.is_dir():
        return given
    if given.is_file():
        raise ValueError(
            f"{given} is a file, but the {what} needs a diffusers-format folder "
            "(with model_index.json or config.json). Pass the folder or a Hugging Face repo id."
        )
    if not _REPO_ID_RE.match(text):
        raise FileNotFoundError(
            f"The {what} folder {text!r} does not exist, and it is not a Hugging Face repo id "
            "of the form 'org/name'. Pass an existing folder or a repo id."
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir, local_files_only=True))
    except Exception as offline_exc:  # not cached (LocalEntryNotFoundError and relatives)
        if not allow_download:
            raise FileNotFoundError(
                f"The {what} {text!r} is neither a local folder nor in the Hugging Face cache "
                f"({_hf_cache_label(cache_dir)}), and downloading is off. Allow downloading, or "
                f"run `hf download {text} --local-dir <folder>` and pass that folder."
            ) from offline_exc
    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache_dir))
    except Exception as exc:
        raise FileNotFoundError(
            f"Downloading the {what} {text!r} from the Hugging Face Hub failed: "
            f"{type(exc).__name__}: {exc}. Check the repo id, your network and (for gated "
            "repos) your token, or download it yourself and pass the folder."
        ) from exc
