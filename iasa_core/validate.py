"""Checks of user inputs shared by the CLI, the library and the nodes: a bad value stops before any work.

Every check raises ``ValueError`` with one line that names the input (a CLI flag, a node input or a library
argument: the caller passes the name it knows the value by) and says what to give instead. A NaN passes every
``<`` / ``>`` comparison, so ranges are checked here with ``math.isfinite`` first; ComfyUI's own min/max check of
FLOAT widgets lets a NaN from an API prompt through.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .restoration import RESTORE_KEYS

MAX_SEED = 2**64 - 1        # torch.Generator takes seeds up to here; ComfyUI's seed widgets stop here too
MAX_FPS = 1000.0            # the mp4 writer's limit: above it no container or player copes
PIXEL_BUDGET = 1280 * 720   # pixels per frame: Wan2.1's largest trained size (4096x4096 took over 20 GB)
MIN_IMAGE_SIDE = 32         # below this a reference image cannot show a person's face and hands
MIN_SPEECH_SECONDS = 0.2    # five frames at 25 fps: anything shorter is not speech to animate
STRIDE = 16                 # the VAE's 8x times the DiT's 2x patch


def _one_line(text: str) -> str:
    """Messages are printed as one ``error:`` line; keep stray newlines out of them."""
    return " ".join(str(text).split())


def finite(value: Any, name: str, *, low: float | None = None, high: float | None = None,
           above: float | None = None) -> float:
    """``value`` as a float that is finite and within [low, high] (or strictly above ``above``)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(_one_line(f"{name} must be a number; got {value!r}")) from None
    v = float(value)
    bounds = []
    if above is not None:
        bounds.append(f"above {above:g}")
    if low is not None:
        bounds.append(f"at least {low:g}")
    if high is not None:
        bounds.append(f"at most {high:g}")
    want = "a finite number" + (f" ({', '.join(bounds)})" if bounds else "")
    if not math.isfinite(v) or (above is not None and not v > above) or (low is not None and v < low) \
            or (high is not None and v > high):
        raise ValueError(_one_line(f"{name} must be {want}; got {value!r}"))
    return v


def whole(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high]; floats with a fraction, NaN and bools are refused."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(_one_line(f"{name} must be a whole number; got {value!r}"))
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        span = f"from {low} to {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise ValueError(_one_line(f"{name} must be a whole number {span}; got {v}"))
    return v


def seed(value: Any, name: str = "seed") -> int:
    """A noise seed: a whole number from 0 to 2**64 - 1 (what torch.Generator takes)."""
    return whole(value, name, low=0, high=MAX_SEED)


def fps(value: Any, name: str = "fps") -> float:
    """A frame rate above 0 and at most ``MAX_FPS``."""
    return finite(value, name, above=0.0, high=MAX_FPS)


def parse_numbers(text: str, name: str) -> list[float]:
    """Comma-separated numbers, e.g. ``--timesteps 1000,750,500``."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            out.append(float(part))
        except ValueError:
            raise ValueError(_one_line(f"{name} must be comma-separated numbers such as 1000,750,500,250; "
                                       f"{part!r} in {text!r} is not a number")) from None
    return out


def parse_size(text: str, name: str = "size") -> tuple[int, int]:
    """'HxW' (e.g. '480x832') as (H, W)."""
    try:
        h, w = (int(v) for v in str(text).lower().replace("*", "x").split("x"))
    except ValueError:
        raise ValueError(f"{name} must look like HxW (height x width in pixels), e.g. 480x832; got {text!r}") from None
    return h, w


def timesteps(values: Sequence[Any], name: str = "timesteps") -> list[float]:
    """Student timesteps: finite, within (0, 1000], strictly decreasing."""
    out = [finite(v, name, above=0.0, high=1000.0) for v in values]
    if not out:
        raise ValueError(f"{name} must list at least one timestep, e.g. 1000,750,500,250")
    if any(b >= a for a, b in zip(out[:-1], out[1:], strict=True)):
        raise ValueError(_one_line(f"{name} must decrease, e.g. 1000,750,500,250; got {','.join(f'{t:g}' for t in out)}"))
    return out


def video_size(hw: Sequence[int], name: str = "size", *, allow_large: bool = False,
               fix: str = "give a smaller size=(H, W), or allow_large_size=True to try it anyway") -> tuple[int, int]:
    """A video size (H, W): positive multiples of 16 within ``PIXEL_BUDGET`` unless ``allow_large``.

    ``fix`` tells the caller's user how to get under the budget (their flag or input names)."""
    h, w = (int(v) for v in hw)
    if h <= 0 or w <= 0 or h % STRIDE or w % STRIDE:
        raise ValueError(f"{name} {w}x{h} (width x height) must be positive multiples of {STRIDE}")
    if h * w > PIXEL_BUDGET and not allow_large:
        raise ValueError(_one_line(
            f"{name} {w}x{h} (width x height) is {h * w / 1e6:.1f} megapixels per frame, above the budget of {PIXEL_BUDGET / 1e6:.2f} "
            f"(1280x720, the largest size Wan2.1 was trained at; memory grows with the pixels, 4096x4096 took over "
            f"20 GB): {fix}"))
    return h, w


def reference_image(hw: Sequence[int], name: str = "reference image") -> None:
    """A reference photo big enough to show a person (``MIN_IMAGE_SIDE`` pixels on its short side)."""
    h, w = (int(v) for v in hw[:2])
    if min(h, w) < MIN_IMAGE_SIDE:
        raise ValueError(_one_line(
            f"{name} is {w}x{h} pixels; a reference photo needs at least {MIN_IMAGE_SIDE} pixels on its short side "
            "to show the person (the video is made at the model's size from it)"))


def poses_with_person(keypoints: np.ndarray, name: str = "poses") -> None:
    """Poses where at least one frame holds a person (a keypoint with a score above 0)."""
    kp = np.asarray(keypoints)
    if kp.size == 0 or not bool((kp[..., 2] > 0).any()):
        raise ValueError(_one_line(
            f"{name}: no frame holds a person (every keypoint has score 0), so there is nobody to animate; "
            "make the poses from a photo or video where one person's upper body is visible"))


def audio_length(seconds: float, name: str = "audio", minimum: float = MIN_SPEECH_SECONDS) -> None:
    """Speech long enough to animate (``MIN_SPEECH_SECONDS``)."""
    if not seconds >= minimum:
        raise ValueError(_one_line(
            f"{name} is {seconds * 1000:.0f} ms long; speech to animate must last at least {minimum:g} s"))


# What each GenerateOptions field is called in messages (the CLI and the nodes pass their own flags and inputs);
# "size_fix" is the advice for a size above the budget, in the same caller's words.
GENERATE_NAMES = {"sampler": "sampler", "timesteps": "timesteps", "steps": "steps", "guidance": "guidance",
                  "shift": "shift", "seed": "seed", "top_k": "top_k", "backend": "backend",
                  "window_frames": "window_frames", "overlap_latents": "overlap_latents", "size": "size",
                  "face_restore": "face_restore", "background_restore": "background_restore",
                  "body_restore": "body_restore",
                  "size_fix": "give a smaller size=(H, W), or allow_large_size=True to try it anyway"}


def generate_options(opt: Any, names: Mapping[str, str] | None = None) -> None:
    """Every scalar of a ``GenerateOptions``; ``names`` maps its fields to what the caller calls them."""
    from .sparse.attention import BACKENDS

    n = {**GENERATE_NAMES, **(names or {})}
    if opt.sampler not in ("auto", "student", "teacher"):
        raise ValueError(f"{n['sampler']} must be 'auto', 'student' or 'teacher'; got {opt.sampler!r}")
    if opt.timesteps is not None:
        timesteps(opt.timesteps, n["timesteps"])
    if opt.steps is not None:
        whole(opt.steps, n["steps"], low=1, high=10000)
    if opt.guidance is not None:
        finite(opt.guidance, n["guidance"], low=0.0)
    if opt.shift is not None:
        finite(opt.shift, n["shift"], above=0.0)
    seed(opt.seed, n["seed"])
    if opt.top_k is not None:
        whole(opt.top_k, n["top_k"], low=1)
    if opt.backend not in ("auto",) + BACKENDS:
        raise ValueError(f"{n['backend']} must be one of {('auto',) + BACKENDS}; got {opt.backend!r}")
    frames = whole(opt.window_frames, n["window_frames"], low=5)
    if (frames - 1) % 4:
        raise ValueError(f"{n['window_frames']} must be 4n+1 (5, 9, ..., 81); got {frames}")
    whole(opt.overlap_latents, n["overlap_latents"], low=1, high=(frames - 1) // 4)  # latent frames, < a window
    if opt.size is not None:
        video_size(opt.size, n["size"], allow_large=bool(getattr(opt, "allow_large_size", False)), fix=n["size_fix"])
    for key in RESTORE_KEYS:
        restore = getattr(opt, key, None)
        if restore is not None and not isinstance(restore, (bool, np.bool_)):
            raise ValueError(f"{n[key]} must be true, false or none (the model's own setting); "
                             f"got {restore!r}")


def runtime(backend: str, device: torch.device | str, dtype: torch.dtype, names: Mapping[str, str] | None = None
            ) -> None:
    """A sparse backend that can run on this device and dtype (checked before anything is loaded)."""
    from .sparse.attention import available_backends

    n = {"backend": "backend", "dtype": "dtype", **(names or {})}
    device = torch.device(device)
    if backend in ("auto", "dense", "gather"):
        return
    why = available_backends(device).get(backend)
    if why is None:
        raise ValueError(f"{n['backend']} {backend!r} is unknown; choose auto, dense, gather, flex or flashinfer")
    if why:
        raise ValueError(_one_line(f"{n['backend']} {backend} cannot run on {device}: {why}"))
    if backend == "flashinfer" and dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"{n['backend']} flashinfer takes bfloat16 or float16; set {n['dtype']} to one of them")


def finite_tensors(tensors: Iterable[tuple[str, torch.Tensor]], where: str) -> None:
    """Refuse weights holding NaN or inf, naming the file and the first bad tensor."""
    for key, t in tensors:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or not t.numel():
            continue
        if t.element_size() == 1:  # float8 has no isfinite kernel; half holds every float8 value
            t = t.to(torch.float16)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(_one_line(
                f"{where}: tensor {key!r} holds NaN or infinite values; the file is damaged or was saved from a "
                "diverged run: use another copy of the weights"))


def finite_latents(latents: torch.Tensor) -> None:
    """Refuse to decode latents holding NaN or inf (they would give an all-black video)."""
    if not bool(torch.isfinite(latents).all()):
        raise ValueError("sampling gave NaN or infinite latents, so nothing was decoded: the model's weights (or a "
                         "LoRA merged at a large strength) or the sampling options give non-finite values; check "
                         "them or try float32")
