"""Reading a checkpoint folder's files (state.json, weights.safetensors, optimizers.pt) whole, or saying why not.

A checkpoint folder appears only once complete (it is renamed into place), but a crash, a full disk or a copy
can still leave a truncated or garbled file in it. Such a checkpoint must be passed over for the one before,
never half-applied and never a raw traceback.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

STATE = "state.json"
WEIGHTS = "weights.safetensors"
OPTIMIZERS = "optimizers.pt"


class CheckpointError(ValueError):
    """A checkpoint whose files cannot be read whole; the message names the file and the cause."""


def _state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads((path / STATE).read_text())
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path / STATE}: {type(exc).__name__}: {exc}") from None
    return state


def damage(path: Path) -> str | None:
    """Why checkpoint ``path`` cannot be used, from cheap checks (no tensor is read); None when it looks whole.

    state.json must parse, the safetensors header must match the file's size and the optimizer archive's
    index (at its end) must be there: a truncated file fails one of these."""
    try:
        _state(path)
        with safe_open(str(path / WEIGHTS), framework="pt"):
            pass
        with zipfile.ZipFile(path / OPTIMIZERS) as archive:
            archive.namelist()
    except CheckpointError as exc:
        return str(exc)
    except (SafetensorError, OSError, zipfile.BadZipFile) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def read_checkpoint_files(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """state.json, every stored tensor and the optimizer states, all read before any is used; CheckpointError if not."""
    state = _state(path)
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path / WEIGHTS}: {type(exc).__name__}: {exc}") from None
    try:
        optimizers = torch.load(path / OPTIMIZERS, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path / OPTIMIZERS}: {type(exc).__name__}: {exc}") from None
    if not isinstance(optimizers, dict):
        raise CheckpointError(f"{path / OPTIMIZERS}: expected a dict of optimizer states, got "
                              f"{type(optimizers).__name__}")
    return state, tensors, optimizers
