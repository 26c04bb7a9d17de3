"""Long video: overlapping windows of latent frames, fused by temporal index at every denoising step (paper 4.5)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .samplers import Predictor

MAX_WINDOW_FRAMES = 81       # the model's training length
DEFAULT_OVERLAP_LATENTS = 4  # UniAnimate slides 21 latent frames with an overlap of 4


def latent_frames(num_frames: int) -> int:
    """Latent frames of a 4n+1-frame video."""
    return (num_frames - 1) // 4 + 1


@dataclass(frozen=True)
class Window:
    """Latent frames [start, stop) of the whole video; its pose frames are video frames 4*start .. 4*(stop-1)."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        """Latent frames in the window."""
        return self.stop - self.start

    @property
    def video_frames(self) -> slice:
        """The window's pose/video frames: its first latent frame stands for one frame, like a clip's first."""
        return slice(4 * self.start, 4 * (self.stop - 1) + 1)


def plan_windows(num_latents: int, window_latents: int = latent_frames(MAX_WINDOW_FRAMES),
                 overlap: int = DEFAULT_OVERLAP_LATENTS) -> list[Window]:
    """Equal-length windows covering all latent frames, consecutive ones sharing at least ``overlap`` frames."""
    if num_latents < 1:
        raise ValueError(f"need at least one latent frame; got {num_latents}")
    if window_latents < 2:
        raise ValueError(f"a window needs at least 2 latent frames (5 video frames); got {window_latents}")
    if not 0 < overlap < window_latents:
        raise ValueError(f"overlap must be between 1 and window-1 = {window_latents - 1} latent frames; got {overlap}")
    if num_latents <= window_latents:
        return [Window(0, num_latents)]
    stride = window_latents - overlap
    starts = list(range(0, num_latents - window_latents, stride)) + [num_latents - window_latents]
    # The last window is pulled back to end at the video's end, so every window has the same length
    # (one condition tensor serves all) and overlaps are never shorter than asked.
    return [Window(s, s + window_latents) for s in starts]


def window_weights(windows: list[Window], num_latents: int) -> torch.Tensor:
    """(num_windows, num_latents) blend weights: linear ramps across overlaps, summing to 1 per frame."""
    w = torch.zeros(len(windows), num_latents, dtype=torch.float64)
    for i, win in enumerate(windows):
        ramp = torch.ones(win.length, dtype=torch.float64)
        if i > 0:
            overlap = windows[i - 1].stop - win.start
            ramp[:overlap] = torch.minimum(ramp[:overlap], torch.arange(1, overlap + 1) / (overlap + 1))
        if i + 1 < len(windows):
            overlap = win.stop - windows[i + 1].start
            ramp[win.length - overlap:] = torch.minimum(ramp[win.length - overlap:],
                                                        torch.arange(overlap, 0, -1) / (overlap + 1))
        w[i, win.start:win.stop] = ramp
    return w / w.sum(dim=0, keepdim=True)


def windowed(predict_window: Callable[[int, torch.Tensor, float], torch.Tensor], windows: list[Window],
             num_latents: int) -> Predictor:
    """A whole-video predictor from a per-window one ``predict_window(index, x_window, sigma)``.

    Every window sees the same current latents and their predictions are averaged with ``window_weights``,
    so shared frames hold one value at every step: there is nothing left to stitch afterwards.
    """
    weights = window_weights(windows, num_latents)

    def predict(x: torch.Tensor, sigma: float) -> torch.Tensor:
        if x.shape[2] != num_latents:
            raise ValueError(f"latents have {x.shape[2]} frames; the windows were planned for {num_latents}")
        if len(windows) == 1:
            return predict_window(0, x, sigma)
        out = torch.zeros_like(x)
        for i, win in enumerate(windows):
            v = predict_window(i, x[:, :, win.start:win.stop], sigma)
            wt = weights[i, win.start:win.stop].to(x.device, x.dtype).view(1, 1, -1, 1, 1)
            out[:, :, win.start:win.stop] += wt * v.to(x.dtype)
        return out

    return predict
