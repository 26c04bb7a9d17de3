"""Stage 2 end to end: reference image + pose sequence -> video frames (used by the CLI and the nodes alike)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from . import validate
from .background_restore import FEATHER, GROW, TIGHT, BackgroundRestorer
from .body_restore import BodyRestorer
from .face_restore import FaceRestorer
from .model.pose_wan import drop_condition
from .model.system import PoseWanSystem
from .pose.render import RenderStyle, render_poses_tensor
from .pose.sequence import PoseSequence
from .sampling.noise import FrameNoise
from .sampling.samplers import SamplingCancelled
from .sampling.schedules import student_sigmas, teacher_sigmas
from .sampling.windows import MAX_WINDOW_FRAMES, latent_frames, plan_windows
from .sparse.grid import SPATIAL_STRIDE
from .sparse.plan import PlanConfig
from .video_stream import VideoStream, WindowConditioner

ASPECT_TOLERANCE = 0.01


@dataclass
class GenerateOptions:
    """How to sample; ``None`` fields take the model's stored defaults."""

    sampler: str = "auto"                 # "student" (few-step), "teacher" (Euler + CFG) or "auto": the model's kind
    timesteps: list[float] | None = None  # student timesteps out of 1000
    steps: int | None = None              # teacher Euler steps (default: the model's stored value, else 30)
    guidance: float | None = None         # teacher CFG scale, pose and image dropped in the unconditional branch
                                          # (default: the model's stored value, else 5)
    shift: float | None = None
    seed: int = 0
    sparse: bool = True                   # IASA self-attention; False runs dense attention
    top_k: int | None = None
    block_size: int | None = None
    mode: str | None = None
    local: bool | None = None             # False: the global (top-K frames) mask without the same-region rule
    backend: str = "auto"
    window_frames: int = MAX_WINDOW_FRAMES
    overlap_latents: int = 4
    size: tuple[int, int] | None = None   # (H, W) of the video; default: the image's, rounded down to 16
    pose_bgr: bool | None = None          # swap R/B in pose images (UniAnimate-trained weights expect it)
    prompt_embeds: torch.Tensor | None = None           # (tokens, text_dim); default: the model's stored prompt
    negative_prompt_embeds: torch.Tensor | None = None  # teacher's unconditional text; default: the same prompt
    allow_large_size: bool = False       # sizes above validate.PIXEL_BUDGET are refused unless this is set
    anchor_first: bool = True             # latent frame 0 lands on the reference image's own latent (the video
                                          # starts from the photo); False leaves that frame to the model
    face_restore: bool | None = None      # warp the reference photo's face onto every frame (``face_restore``);
                                          # None: the model's stored setting (on for the embedded models only)
    background_restore: bool | None = None  # the reference photo's background wherever the person is not
                                            # (``background_restore``); None: the model's stored setting
    body_restore: bool | None = None      # the reference photo's head, torso, arms and hands moved onto each frame's
                                          # pose (``body_restore``); None: the model's stored setting


@dataclass
class GenerationResult:
    """Frames (T, H, W, 3) uint8 at ``fps`` plus what it took."""

    frames: np.ndarray
    fps: float
    timings: dict[str, float] = field(default_factory=dict)
    plans: list[dict[str, Any]] = field(default_factory=list)
    denoiser_calls: int = 0
    restore_notes: list[str] = field(default_factory=list)  # what each restoration did (one line each)


def plan_options(sparse: dict[str, Any]) -> dict[str, Any]:
    """The stored sparse settings that ``build_plan`` takes (unknown keys are an error, not ignored)."""
    known = {f.name for f in dataclasses.fields(PlanConfig)}
    unknown = set(sparse) - known
    if unknown:
        raise ValueError(f"unknown sparse settings {sorted(unknown)}; expected some of {sorted(known)}")
    out = dict(sparse)
    if out.get("regions") is not None:
        out["regions"] = tuple(out["regions"])
    return out


def video_size(image_hw: tuple[int, int], size: tuple[int, int] | None) -> tuple[int, int]:
    """The output size: the one asked for, or the image's rounded down to the token stride."""
    if size is not None:
        h, w = size
        if h % SPATIAL_STRIDE or w % SPATIAL_STRIDE or h <= 0 or w <= 0:
            raise ValueError(f"video size {w}x{h} (width x height) must be positive multiples of {SPATIAL_STRIDE}")
        return h, w
    h, w = (max(SPATIAL_STRIDE, v // SPATIAL_STRIDE * SPATIAL_STRIDE) for v in image_hw)
    return h, w


# Conditioning stages reported to ``condition_callback``: reference image, reference pose, first window.
CONDITION_STAGES = 3

# How the command line's user remakes poses that do not fit the image (callers with other inputs pass theirs).
FIT_POSES_FIX = ("Make the poses from this image (motion --ref-image, or pose --image) or crop the image to "
                 "the poses' aspect ratio")


def fit_poses(poses: PoseSequence, image_hw: tuple[int, int], out_hw: tuple[int, int],
              fix: str = FIT_POSES_FIX) -> np.ndarray:
    """The poses' keypoints rescaled from their canvas to the video size; the canvas must match the image."""
    ih, iw = image_hw
    if abs(poses.width / poses.height - iw / ih) > ASPECT_TOLERANCE * (iw / ih):
        raise ValueError(
            f"the poses were made for a {poses.width}x{poses.height} canvas but the reference image is {iw}x{ih} "
            f"(width x height): their shapes differ. {fix}")
    kp = poses.keypoints.astype(np.float32).copy()
    oh, ow = out_hw
    kp[..., 0] *= ow / poses.width
    kp[..., 1] *= oh / poses.height
    return kp


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image with antialiasing."""
    if image.shape[:2] == tuple(hw):
        return image
    x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def pad_to_4n1(keypoints: np.ndarray) -> np.ndarray:
    """Repeat the last pose so the frame count is 4n+1 (the VAE's temporal grid)."""
    n = len(keypoints)
    target = 4 * math.ceil((n - 1) / 4) + 1
    if target == n:
        return keypoints
    return np.concatenate([keypoints, np.repeat(keypoints[-1:], target - n, axis=0)], axis=0)


def _render(keypoints: np.ndarray, hw: tuple[int, int], style: RenderStyle) -> torch.Tensor:
    return render_poses_tensor(keypoints, hw[0], hw[1], style)


def generate_video(system: PoseWanSystem, image: np.ndarray, poses: PoseSequence,
                   options: GenerateOptions | None = None, *,
                   callback: Callable[[int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None,
                   condition_callback: Callable[[int, int], None] | None = None) -> GenerationResult:
    """Animate the person in ``image`` (H, W, 3 uint8) along ``poses`` with the stage-2 model, all in memory.

    ``callback(done, total)`` counts window steps (the sampler's steps when the video is one window);
    ``condition_callback(done, CONDITION_STAGES)`` the conditioning before them (``stream_video``).
    ``stream_video`` makes the same frames a chunk at a time (for long videos written to a file)."""
    stream = stream_video(system, image, poses, options, callback=callback, cancel=cancel,
                          condition_callback=condition_callback)
    frames = np.empty((len(stream), stream.height, stream.width, 3), dtype=np.uint8)
    at = 0
    for chunk in stream.chunks():
        frames[at:at + len(chunk)] = chunk
        at += len(chunk)
    return GenerationResult(frames[:at], stream.fps, timings=stream.timings, plans=stream.plans,
                            denoiser_calls=stream.denoiser_calls,
                            restore_notes=[r.summary() for r in stream.restorers])


def stream_video(system: PoseWanSystem, image: np.ndarray, poses: PoseSequence,
                 options: GenerateOptions | None = None, *,
                 callback: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None,
                 condition_callback: Callable[[int, int], None] | None = None) -> VideoStream:
    """Check the inputs and condition the model now; sample and decode while the returned stream is read.

    ``condition_callback(done, CONDITION_STAGES)`` reports the conditioning (reference image, reference pose,
    the first window's poses and plan), which on a CPU takes seconds before the first step.
    Memory does not grow with the video's length; the frames equal ``generate_video``'s bit for bit."""
    opt = options or GenerateOptions()

    def stage(done: int) -> None:
        if condition_callback is not None:
            condition_callback(done, CONDITION_STAGES)
        if cancel is not None and cancel():
            raise SamplingCancelled("generation cancelled while conditioning")

    t_start = time.perf_counter()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"reference image must be (height, width, 3) uint8; got {image.shape} {image.dtype}")
    if len(poses) < 1:
        raise ValueError("the pose sequence is empty")
    validate.generate_options(opt)
    validate.reference_image(image.shape, "reference image")
    validate.poses_with_person(poses.keypoints)
    hw = video_size(image.shape[:2], opt.size)
    if opt.size is None:
        validate.video_size(hw, "the reference image's size", allow_large=opt.allow_large_size,
                            fix="scale the reference image down, give a smaller size=(H, W), or set "
                                "allow_large_size=True to try it anyway")
    validate.runtime(opt.backend if opt.sparse else "dense", system.device, system.dtype)
    keypoints = pad_to_4n1(fit_poses(poses, image.shape[:2], hw))
    image = resize_image(image, hw)
    device, dtype = system.device, system.dtype
    kind = system.schedule.get("kind", "student") if opt.sampler == "auto" else opt.sampler
    if kind not in ("student", "teacher"):
        raise ValueError(f"sampler must be 'student', 'teacher' or 'auto'; got {opt.sampler!r}")
    shift = opt.shift if opt.shift is not None else float(system.schedule.get("shift", 5.0))
    style = system.pose_style(opt.pose_bgr)  # the model's own drawing (colour order, face points)

    num_latents = latent_frames(len(keypoints))
    if opt.window_frames < 5 or (opt.window_frames - 1) % 4:
        raise ValueError(f"window_frames must be 4n+1 and at least 5; got {opt.window_frames}")
    windows = plan_windows(num_latents, latent_frames(opt.window_frames), opt.overlap_latents)
    win_frames = 4 * (windows[0].length - 1) + 1

    stage(0)
    with torch.no_grad():
        condition = system.condition(image, win_frames, opt.prompt_embeds)
        stage(1)
        ref_pose = _render(keypoints[:1], hw, style)[:, 0][None].to(device)  # (1, 3, H, W) in 0..255
        ref = system.denoiser.ref_pose_encoder(ref_pose).to(dtype)
        stage(2)
    sp = dict(system.sparse)
    for key in ("top_k", "block_size", "mode", "local"):
        if getattr(opt, key) is not None:
            sp[key] = getattr(opt, key)

    steps = int(opt.steps if opt.steps is not None else system.schedule.get("steps", 30))
    guidance = float(opt.guidance if opt.guidance is not None else system.schedule.get("guidance", 5.0))
    keep = None
    if kind == "teacher" and guidance != 1.0:
        keep = torch.tensor([1.0, 0.0], device=device)  # batch of [conditional, unconditional]
        both = drop_condition(condition, keep)
        neg = opt.negative_prompt_embeds
        if neg is not None:
            both.text = torch.cat([condition.text, system.text_context(neg)])
    else:
        both = condition
    conditioner = WindowConditioner(system, keypoints, hw, windows, ref, style,
                                    plan_options(sp) if opt.sparse else None, keep=keep)
    # The first window's pose features and plan now (sampling would build them before its first step anyway),
    # so that they count as conditioning on the progress bar rather than as a long first step.
    conditioner.get(0)
    stage(3)

    min_score = float(sp.get("min_score", 0.3))
    wanted = {key: bool(system.schedule.get(key, False) if asked is None else asked) for key, asked in
              (("background_restore", opt.background_restore), ("body_restore", opt.body_restore),
               ("face_restore", opt.face_restore))}
    restorers = []
    if wanted["background_restore"]:  # a body drawn from the reference has a sharp outline: tight margins suffice
        grow, feather = TIGHT if wanted["body_restore"] else (GROW, FEATHER)
        restorers.append(BackgroundRestorer(image, keypoints[0], min_score=min_score, grow=grow, feather=feather))
    # the body goes over the background, the face over both (except where a hand is in front of the face)
    for cls, key in ((BodyRestorer, "body_restore"), (FaceRestorer, "face_restore")):
        if wanted[key]:
            restorers.append(cls(image, keypoints[0], min_score=min_score))

    generator = torch.Generator().manual_seed(int(opt.seed))
    h, w = hw[0] // 8, hw[1] // 8
    z = system.config.transformer["out_channels"]
    noise = FrameNoise((1, z, num_latents, h, w), generator)  # torch.randn's draw, made as sampling reaches it
    if kind == "student":
        timesteps = opt.timesteps or system.schedule.get("timesteps", [1000, 750, 500, 250])
        sigmas = student_sigmas(timesteps, shift)
    else:
        sigmas = teacher_sigmas(steps, shift)
    return VideoStream(system, conditioner, both, noise, sigmas, kind, generator, guidance, opt.backend,
                       num_frames=len(poses), fps=float(poses.fps), started=t_start,
                       setup_seconds=time.perf_counter() - t_start, callback=callback, cancel=cancel,
                       check=validate.finite_latents,  # NaN latents would decode to an all-black video, exit 0
                       anchor=condition.y[:1, 4:, :1].clone() if opt.anchor_first else None,
                       restorers=tuple(restorers))
