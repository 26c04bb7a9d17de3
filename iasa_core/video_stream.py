"""A generated video handed out while it is made: windows sampled as a wavefront, latents decoded as they finish.

Memory stays flat in the video's length: a window's pose features and sparse plan exist only between its
first and last denoising step, the VAE decodes one chunk at a time, and frames go to the caller (a video
writer) as soon as they are decoded. Latents and noise exist only for the frames between the wavefront's
tail and head (``stream_sample``, ``FrameNoise``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .model.pose_wan import Condition, PoseFeatures, drop_pose
from .model.sparse_patch import sparse_attention_enabled
from .model.system import PoseWanSystem
from .pose.render import RenderStyle, render_poses_tensor
from .sampling.noise import FrameNoise
from .sampling.samplers import anchor_first_frame, cfg_combine
from .sampling.schedules import sigma_to_timestep
from .sampling.streaming import stream_sample
from .sampling.windows import Window
from .sparse.plan import SparsePlan, build_plan


@dataclass
class WindowConditioner:
    """Per-window pose features and sparse plan, built when a window first runs and dropped when it retires."""

    system: PoseWanSystem
    keypoints: np.ndarray            # (frames, 133, 3) in video pixels, padded to 4n+1
    hw: tuple[int, int]
    windows: list[Window]
    ref: torch.Tensor                # the encoded reference pose, shared by every window
    style: RenderStyle               # how the model's pose images are drawn
    plan_settings: dict[str, Any] | None  # build_plan options; None: dense attention
    keep: torch.Tensor | None = None  # CFG batch [conditional, unconditional]: pose dropped in the second
    seconds: float = 0.0             # time spent building, counted as conditioning
    summaries: list[dict[str, Any]] = field(default_factory=list)
    _live: dict[int, tuple[PoseFeatures, SparsePlan | None]] = field(default_factory=dict)

    def get(self, i: int) -> tuple[PoseFeatures, SparsePlan | None]:
        """Window ``i``'s features and plan."""
        if i not in self._live:
            self._live[i] = self._build(i)
        return self._live[i]

    def retire(self, i: int) -> None:
        """Window ``i`` has run its last step: free its state."""
        self._live.pop(i, None)

    @property
    def live(self) -> int:
        """Windows whose state is held now."""
        return len(self._live)

    def _build(self, i: int) -> tuple[PoseFeatures, SparsePlan | None]:
        t0 = time.perf_counter()
        frames = self.keypoints[self.windows[i].video_frames]
        denoiser = self.system.denoiser
        with torch.no_grad():
            # rendered per window: a whole long video of pose images would not fit in memory
            pose_video = render_poses_tensor(frames, self.hw[0], self.hw[1], self.style)[None]
            encoded = denoiser.pose_encoder(pose_video.to(self.system.device)).to(self.system.dtype)
            features = PoseFeatures(encoded, self.ref)
            if self.keep is not None:
                features = drop_pose(features, self.keep)
        plan = build_plan(frames, self.hw, **self.plan_settings) if self.plan_settings is not None else None
        if plan is not None:
            self.summaries.append(plan.to_summary())
        self.seconds += time.perf_counter() - t0
        return features, plan


@dataclass
class VideoStream:
    """Frames (H, W, 3) uint8 of a video, sampled and decoded while it is iterated (once)."""

    system: PoseWanSystem
    conditioner: WindowConditioner
    condition: Condition
    noise: FrameNoise                # the initial noise, drawn a few frames at a time as sampling reaches them
    sigmas: torch.Tensor
    kind: str                        # "student" or "teacher"
    generator: torch.Generator
    guidance: float
    backend: str
    num_frames: int
    fps: float
    started: float                   # perf_counter() when the inputs were first looked at
    setup_seconds: float             # checking and conditioning before the stream was made
    callback: Callable[[int, int], None] | None = None
    cancel: Callable[[], bool] | None = None
    check: Callable[[torch.Tensor], None] | None = None  # sees each piece of clean latents before it is decoded
    anchor: torch.Tensor | None = None  # (1, z, 1, h, w) clean latent of frame 0 (the reference image) to land on
    restorers: tuple = ()  # post-processes of the decoded frames, in order (background, then face restoration)
    denoiser_calls: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    _used: bool = False
    _setup_window_seconds: float = field(init=False, default=0.0)
    _sampling_seconds: float = 0.0
    _restore_seconds: float = 0.0

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self.conditioner.hw[0]

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self.conditioner.hw[1]

    @property
    def plans(self) -> list[dict[str, Any]]:
        """Summaries of the windows' sparse plans built so far (all of them once the stream is read)."""
        return self.conditioner.summaries

    def __post_init__(self) -> None:
        # windows built before the stream existed (the first, by stream_video) are in setup_seconds already
        self._setup_window_seconds = self.conditioner.seconds

    def __len__(self) -> int:
        """Frames in the video."""
        return self.num_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[np.ndarray]:
        """Decoded frames (t, H, W, 3) uint8 in order, a VAE chunk at a time."""
        if self._used:
            raise RuntimeError("a VideoStream can be read only once")
        self._used = True

        def latents() -> Iterator[torch.Tensor]:
            pieces = stream_sample(self._predict, self.conditioner.windows, self.noise, self.sigmas, kind=self.kind,
                                   generator=self.generator, dtype=self.system.dtype, device=self.system.device,
                                   retire=self.conditioner.retire, callback=self.callback, cancel=self.cancel)
            for _start, piece in pieces:
                if self.check is not None:
                    self.check(piece)
                yield piece

        left, producing = self.num_frames, 0.0  # producing: time inside the pipeline, not the reader's
        frames = self.system.decode_frames(latents())
        while left > 0:
            t0 = time.perf_counter()
            chunk = next(frames, None)
            if chunk is None:
                producing += time.perf_counter() - t0
                break
            chunk = chunk[:left]  # the poses were padded to 4n+1 frames
            if self.restorers:
                t1 = time.perf_counter()
                at = self.num_frames - left
                for restorer in self.restorers:
                    if restorer.usable:
                        chunk = restorer.restore(chunk, self.conditioner.keypoints[at:at + len(chunk)])
                self._restore_seconds += time.perf_counter() - t1
            producing += time.perf_counter() - t0
            left -= len(chunk)
            yield chunk
        frames.close()
        self._finish_timings(producing)

    def _predict(self, i: int, x: torch.Tensor, sigma: float) -> torch.Tensor:
        features, plan = self.conditioner.get(i)
        t0 = time.perf_counter()
        cond = self.condition
        with torch.no_grad():
            xb = x.expand(cond.y.shape[0], -1, -1, -1, -1)
            t = torch.full((xb.shape[0],), sigma_to_timestep(sigma), device=x.device, dtype=torch.float32)
            with sparse_attention_enabled(self.system.denoiser, plan, self.backend):
                v = self.system.denoiser(xb, t, cond, features)
            self.denoiser_calls += 1
            out = cfg_combine(v[:1], v[1:], self.guidance) if v.shape[0] == 2 else v
            if self.anchor is not None and i == 0:  # window 0 starts at latent frame 0
                out = anchor_first_frame(out, x, self.anchor, sigma)
        self._sampling_seconds += time.perf_counter() - t0
        return out

    def _finish_timings(self, producing: float) -> None:
        """Split the time spent making frames into conditioning, sampling, decoding and restoration."""
        sampling, restore = self._sampling_seconds, self._restore_seconds
        window_conditioning = self.conditioner.seconds - self._setup_window_seconds  # built while producing
        # frames_s: the time spent making frames, without the reader's (a video writer's) between them
        self.timings = {"conditioning_s": self.setup_seconds + window_conditioning, "sampling_s": sampling,
                        "decode_s": max(0.0, producing - sampling - window_conditioning - restore),
                        "restore_s": restore,
                        "frames_s": self.setup_seconds + producing, "total_s": time.perf_counter() - self.started}
