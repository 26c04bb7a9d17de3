"""Every ComfyUI import of the node pack, behind small functions that also work without ComfyUI.

With ComfyUI present these call ``folder_paths``, ``comfy.utils``, ``comfy.model_management`` and
``comfy_api``; without it (tests, the headless library) they fall back to plain folders and no-ops:
models under the folders named by :func:`set_models_dir` or ``$IASA_MODELS_DIR`` (each a models root
holding ``iasa/``, ``dwpose/`` ...; several separated by ``os.pathsep``), inputs under
:func:`set_input_directory` or ``$IASA_INPUT_DIR`` (default ``./input``).
Nothing here downloads anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

try:  # ComfyUI's own modules exist only inside a ComfyUI process
    import folder_paths  # type: ignore[import-not-found]
except ImportError:
    folder_paths = None

HAVE_COMFY = folder_paths is not None

# Model folders this pack adds to ComfyUI's models/ (the standard ones already exist there).
MODEL_FOLDERS = ("iasa", "emage", "dwpose", "smplx")
WEIGHT_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")  # what iasa_core.model.loading reads
ENV_MODELS = "IASA_MODELS_DIR"
ENV_INPUT = "IASA_INPUT_DIR"

_models_override: list[str] | None = None
_input_override: str | None = None
_ANNOTATION = re.compile(r"^(.*) \[(input|output|temp)\]$")


# ---------------------------------------------------------------------- folders


def set_models_dir(paths: str | os.PathLike | Sequence[str | os.PathLike] | None) -> None:
    """Use these models roots (each holding iasa/, dwpose/, ...) instead of $IASA_MODELS_DIR; None resets.

    With ComfyUI present the roots' sub-folders are added to ComfyUI's model folders as well.
    """
    global _models_override
    if paths is None:
        _models_override = None
        return
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    _models_override = [os.fspath(p) for p in paths]
    if HAVE_COMFY:
        _register_roots(_models_override, ("iasa", "emage", "dwpose", "smplx", "diffusion_models", "loras", "vae"))


def set_input_directory(path: str | os.PathLike | None) -> None:
    """Use this folder as the input folder when ComfyUI is absent (tests); None resets."""
    global _input_override
    _input_override = None if path is None else os.fspath(path)


def _roots() -> list[str]:
    if _models_override is not None:
        return list(_models_override)
    env = os.environ.get(ENV_MODELS, "")
    return [p for p in env.split(os.pathsep) if p]


def _register_roots(roots: Iterable[str], names: Iterable[str]) -> None:
    for root in roots:
        for name in names:
            folder_paths.add_model_folder_path(name, os.path.join(root, name))


def register_model_folders() -> None:
    """Add models/iasa, models/emage, models/dwpose and models/smplx to ComfyUI (no-op without it).

    Called when the pack is imported; it only registers paths (nothing is created or downloaded).
    """
    if not HAVE_COMFY:
        return
    for name in MODEL_FOLDERS:
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))
    env_roots = [p for p in os.environ.get(ENV_MODELS, "").split(os.pathsep) if p]
    if env_roots:
        _register_roots(env_roots, MODEL_FOLDERS + ("diffusion_models", "loras", "vae"))


def model_dirs(folder: str) -> list[str]:
    """The folders searched for one kind of model ("iasa", "dwpose", "loras", ...)."""
    if HAVE_COMFY:
        try:
            return list(folder_paths.get_folder_paths(folder))
        except KeyError:
            return []
    return [os.path.join(root, folder) for root in _roots()]


def _custom_nodes_dirs() -> list[str]:
    """ComfyUI's custom_nodes folders (without ComfyUI: the folder this pack sits in)."""
    if HAVE_COMFY:
        try:
            return list(folder_paths.get_folder_paths("custom_nodes"))
        except KeyError:
            pass
    return [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]


def controlnet_aux_ckpts() -> list[str]:
    """comfyui_controlnet_aux's checkpoint folders (its ckpts/<repo id>/... layout), where present.

    That pack downloads DWPose to ``<its folder>/ckpts/yzd-v/DWPose/`` unless $AUX_ANNOTATOR_CKPTS_PATH moves
    it; users who have it already hold the weights, so look there rather than ask for a second copy.
    """
    found = []
    env = os.environ.get("AUX_ANNOTATOR_CKPTS_PATH")
    if env and os.path.isdir(env):
        found.append(env)
    for base in _custom_nodes_dirs():
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for name in names:
            # Installed as comfyui_controlnet_aux (git clone) or comfyui-controlnet-aux (registry).
            if "controlnet_aux" in name.lower().replace("-", "_"):
                ckpts = os.path.join(base, name, "ckpts")
                if os.path.isdir(ckpts) and ckpts not in found:
                    found.append(ckpts)
    return found


def dwpose_dirs() -> list[str]:
    """Where DWPose weights are searched: models/dwpose first, then comfyui_controlnet_aux's ckpts."""
    return model_dirs("dwpose") + controlnet_aux_ckpts()


def where_to_put(folders: str | Sequence[str]) -> str:
    """Human words for the folder(s) a model goes into, e.g. "ComfyUI/models/iasa (/x/models/iasa)"."""
    if isinstance(folders, str):
        folders = [folders]
    parts = []
    for folder in folders:
        dirs = model_dirs(folder)
        parts.append(f"ComfyUI/models/{folder}" + (f" ({', '.join(dirs)})" if dirs else ""))
    return " or ".join(parts)


def _walk_files(base: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(base, followlinks=True):
        dirs.sort()
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(root, f), base)
            out.append(rel.replace(os.sep, "/"))
    return out


def list_models(folder: str, extensions: Sequence[str] | None = WEIGHT_EXTENSIONS) -> list[str]:
    """File names (relative, with sub-folders) of one model folder, like folder_paths.get_filename_list."""
    if HAVE_COMFY:
        try:
            names = list(folder_paths.get_filename_list(folder))
        except KeyError:
            names = []
    else:
        names = []
        for d in model_dirs(folder):
            if os.path.isdir(d):
                names.extend(_walk_files(d))
    if extensions is not None:
        names = [n for n in names if os.path.splitext(n)[1].lower() in extensions]
    return sorted(set(names))


def list_model_subdirs(folder: str, marker: str = "config.json") -> list[str]:
    """Sub-folders (one level) of a model folder that hold ``marker`` (model folders such as EMAGE's)."""
    names = set()
    for d in model_dirs(folder):
        if not os.path.isdir(d):
            continue
        for entry in os.listdir(d):
            if os.path.isfile(os.path.join(d, entry, marker)):
                names.add(entry)
    return sorted(names)


def _not_found(what: str, name: str, folders: Sequence[str]) -> FileNotFoundError:
    searched = [d for f in folders for d in model_dirs(f)]
    return FileNotFoundError(
        f"{what} '{name}' was not found. Put the file '{os.path.basename(name)}' in {where_to_put(folders)} "
        f"and refresh the node list (searched: {', '.join(searched) if searched else 'no folders registered'}).")


def full_model_path(folders: str | Sequence[str], name: str, what: str = "Model file") -> str:
    """The full path of a file chosen from :func:`list_models`; FileNotFoundError names it and the folders."""
    if isinstance(folders, str):
        folders = [folders]
    for folder in folders:
        if HAVE_COMFY:
            try:
                path = folder_paths.get_full_path(folder, name)
            except KeyError:
                path = None
            if path and os.path.isfile(path):
                return path
        else:
            for d in model_dirs(folder):
                path = os.path.join(d, name)
                if os.path.isfile(path):
                    return path
    raise _not_found(what, name, folders)


def full_model_dir(folder: str, name: str, what: str = "Model folder") -> str:
    """The full path of a sub-folder chosen from :func:`list_model_subdirs`."""
    for d in model_dirs(folder):
        path = os.path.join(d, name)
        if os.path.isdir(path):
            return path
    searched = model_dirs(folder)
    raise FileNotFoundError(
        f"{what} '{name}' was not found. Put the folder '{name}' in {where_to_put(folder)} and refresh "
        f"the node list (searched: {', '.join(searched) if searched else 'no folders registered'}).")


# ---------------------------------------------------------------------- the input folder


def input_directory() -> str:
    """ComfyUI's input folder (or the stand-in one)."""
    if HAVE_COMFY:
        return folder_paths.get_input_directory()
    if _input_override is not None:
        return _input_override
    return os.environ.get(ENV_INPUT) or os.path.join(os.getcwd(), "input")


def list_input_files(extensions: Sequence[str]) -> list[str]:
    """Files directly in the input folder with one of these extensions, sorted."""
    base = input_directory()
    if not os.path.isdir(base):
        return []
    exts = tuple(e.lower() for e in extensions)
    return sorted(f for f in os.listdir(base)
                  if os.path.isfile(os.path.join(base, f)) and os.path.splitext(f)[1].lower() in exts)


def annotated_filepath(name: str) -> str:
    """The full path of an input-folder file name, "name [input]" annotations understood."""
    if HAVE_COMFY:
        return folder_paths.get_annotated_filepath(name)
    m = _ANNOTATION.match(name)
    if m:
        name = m.group(1)
    return os.path.join(input_directory(), name)


def exists_annotated_filepath(name: str) -> bool:
    """Whether an input-folder file name exists."""
    if HAVE_COMFY:
        return folder_paths.exists_annotated_filepath(name)
    return os.path.exists(annotated_filepath(name))


# ---------------------------------------------------------------------- progress, cancel, devices


class _PlainProgress:
    """Stand-in for comfy.utils.ProgressBar: remembers where it is."""

    def __init__(self, total: int):
        self.total = int(total)
        self.current = 0

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = int(total)
        self.current = int(value)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + int(value), self.total)


def progress_bar(total: int):
    """comfy.utils.ProgressBar(total), or a plain stand-in; both have update_absolute(value, total)."""
    if HAVE_COMFY:
        import comfy.utils

        return comfy.utils.ProgressBar(int(total))
    return _PlainProgress(total)


def progress_callback(total: int | None = None):
    """A ``callback(done, total)`` moving a progress bar; made at the first call when ``total`` is None."""
    state: dict[str, Any] = {"bar": None if total is None else progress_bar(max(1, int(total)))}

    def callback(done: int, n: int | None = None) -> None:
        if state["bar"] is None:
            state["bar"] = progress_bar(max(1, int(n or done or 1)))
        state["bar"].update_absolute(int(done), int(n) if n else None)

    return callback


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed Cancel (no-op without ComfyUI)."""
    if HAVE_COMFY:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()


def cancel_check() -> bool:
    """For library ``cancel=`` hooks: raises ComfyUI's interrupt itself, else returns False."""
    throw_if_interrupted()
    return False


def torch_device():
    """ComfyUI's torch device, or CUDA when available, else CPU."""
    import torch

    if HAVE_COMFY:
        import comfy.model_management

        return comfy.model_management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def soft_empty_cache() -> None:
    """Give cached GPU memory back (comfy.model_management.soft_empty_cache, or torch's)."""
    if HAVE_COMFY:
        import comfy.model_management

        comfy.model_management.soft_empty_cache()
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------- VIDEO


def make_video(images, fps: float, audio: dict | None = None):
    """A core VIDEO object (what SaveVideo takes) from IMAGE frames, fps and an optional AUDIO dict."""
    rate = Fraction(float(fps)).limit_denominator(1001)
    if HAVE_COMFY:
        try:
            from comfy_api.latest import InputImpl, Types  # type: ignore[import-not-found]

            return InputImpl.VideoFromComponents(Types.VideoComponents(images=images, audio=audio, frame_rate=rate))
        except ImportError:
            from comfy_api.input_impl import VideoFromComponents  # type: ignore[import-not-found]
            from comfy_api.util import VideoComponents  # type: ignore[import-not-found]

            return VideoFromComponents(VideoComponents(images=images, audio=audio, frame_rate=rate))
    from .video_standin import VideoStandIn

    return VideoStandIn(images, rate, audio)
