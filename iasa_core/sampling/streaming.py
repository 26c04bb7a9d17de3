"""Long videos in bounded memory: the windowed samplers run as a wavefront and hand out finished latents in order.

``windowed`` + ``sample_student`` / ``sample_teacher`` run every window at step 1, then every window at step 2,
and so on, so every window's pose features and sparse plan live for the whole run and nothing is finished
before the last step. A window's prediction at step s only needs the latents of its own frames at step s,
and those are final once every window covering them has run step s-1. So the steps can run as a wavefront:
window j at step s as soon as the windows around it have run step s-1. Per-window state then lives only
between a window's first and last step, and the frames before the wavefront's tail are finished and can be
decoded and written while sampling goes on.

Every frame sees exactly the operations of the step-by-step samplers, in the same order (window
predictions summed in window order, the same update expressions, the same noise draws in the same order,
read a piece at a time by ``FrameNoise``), so the result is bit-identical to ``sample_student`` /
``sample_teacher`` over ``windowed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .noise import FrameNoise
from .samplers import SamplingCancelled
from .windows import Window, window_weights

WindowPredictor = Callable[[int, torch.Tensor, float], torch.Tensor]


@dataclass
class _Progress:
    """Work units (one window at one step) done, reported like the step-by-step samplers report steps."""

    total: int
    callback: Callable[[int, int], None] | None
    cancel: Callable[[], bool] | None
    done: int = 0

    def tick(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)
        if self.cancel is not None and self.done < self.total and self.cancel():
            raise SamplingCancelled(f"sampling cancelled after {self.done} of {self.total} window steps")


class _Frames:
    """Frames [start, stop) of a (B, C, F, h, w) tensor that is never whole in memory: added at the end, dropped
    from the front (a slice: the storage goes at the next ``extend``, which copies into a new tensor)."""

    def __init__(self, first: torch.Tensor):
        self.t = first
        self.start = 0

    @property
    def stop(self) -> int:
        return self.start + self.t.shape[2]

    def extend(self, frames: torch.Tensor) -> None:
        self.t = torch.cat([self.t, frames], dim=2)

    def drop_before(self, frame: int) -> None:
        if frame > self.start:
            self.t = self.t[:, :, frame - self.start:]
            self.start = frame

    def __getitem__(self, span: tuple[int, int]) -> torch.Tensor:
        a, b = span
        return self.t[:, :, a - self.start:b - self.start]


class _TensorNoise:
    """A noise tensor read like ``FrameNoise``: frame ranges in order."""

    def __init__(self, noise: torch.Tensor):
        self.noise, self.shape, self.next_frame = noise, tuple(noise.shape), 0

    def take(self, stop: int) -> torch.Tensor:
        out = self.noise[:, :, self.next_frame:stop]
        self.next_frame = stop
        return out


def stream_sample(predict_window: WindowPredictor, windows: list[Window], noise: torch.Tensor | FrameNoise,
                  sigmas: torch.Tensor, *, kind: str = "student", generator: torch.Generator | None = None,
                  dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                  retire: Callable[[int], None] | None = None, callback: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Sample ``noise`` (B, z, F, h, w) over ``windows``; yield ``(first_frame, clean latents)`` pieces in order.

    ``noise`` is a tensor or a ``FrameNoise`` draw, whose pieces are cast to ``dtype`` on ``device`` as
    ``torch.randn(...).to(device, dtype)`` would be (a tensor keeps its own). Only the frames between the
    wavefront's tail and head are held. ``kind`` "student": ``sigmas`` are the few-step levels (re-noised
    with fresh draws from ``generator``); "teacher": Euler from sigmas[0] to sigmas[-1]. ``retire(i)`` is
    called once window i has run its last step, so its state can be freed. ``callback(done, total)`` counts
    window steps; with one window that is the sampler's own steps.
    """
    if kind not in ("student", "teacher"):
        raise ValueError(f"kind must be 'student' or 'teacher'; got {kind!r}")
    source = _TensorNoise(noise) if isinstance(noise, torch.Tensor) else noise
    shape = source.shape
    if isinstance(noise, torch.Tensor):
        dtype, device = noise.dtype, noise.device
    num_latents = shape[2]
    if not windows or windows[0].start != 0 or windows[-1].stop != num_latents:
        raise ValueError(f"the windows must cover the {num_latents} latent frames of the noise")
    steps = len(sigmas) if kind == "student" else len(sigmas) - 1
    n = len(windows)
    progress = _Progress(steps * n, callback, cancel)
    single = n == 1
    weights = None if single else window_weights(windows, num_latents)
    # The latents (and the sum of the window predictions at each step) of the frames in flight only.
    first = source.take(windows[0].stop).to(device, dtype)
    x = _Frames(first.clone() if isinstance(noise, torch.Tensor) else first)  # never overwrite the caller's tensor
    acc = {step: _Frames(torch.zeros_like(x.t[:, :, :0])) for step in range(steps)} if not single else {}
    fresh: dict[int, FrameNoise] = {}  # the re-noising draw of each student step, made in step order
    next_window = [0] * steps  # per step: the next window to run
    final = [0] * steps  # per step: frames [0, final) have all their windows' predictions at that step

    def covered(step: int) -> int:
        """Frames whose predictions at ``step`` are all in: those before the next window still to run."""
        return windows[next_window[step]].start if next_window[step] < n else num_latents

    def finish(step: int, a: int, b: int, v: torch.Tensor) -> torch.Tensor | None:
        """Apply the update of ``step`` to frames [a, b) with their prediction ``v``; the clean latents after the last."""
        s = float(sigmas[step])
        xs = x[a, b]
        if kind == "teacher":
            out = xs + (float(sigmas[step + 1]) - s) * v.to(xs.dtype)
            if step + 1 < steps:
                xs.copy_(out)
                return None
            return out
        x0 = xs - s * v.to(xs.dtype)
        if step + 1 == steps:
            return x0
        if step not in fresh:  # sample_student's draw after this step (for the whole video), read piecewise
            fresh[step] = FrameNoise(shape, generator)
        s_next = float(sigmas[step + 1])
        xs.copy_((1 - s_next) * x0 + s_next * fresh[step].take(b).to(xs.device, xs.dtype))
        if b == num_latents:
            del fresh[step]
        return None

    while next_window[-1] < n:
        # the latest step that can run: it finishes frames soonest and frees windows soonest
        for step in reversed(range(steps)):
            j = next_window[step]
            if j < n and (step == 0 or final[step - 1] >= windows[j].stop):
                break
        else:  # step 0 can always run until it is done, and then step 1, ...: never reached
            raise RuntimeError("stream_sample: no window can run")
        win = windows[j]
        if step == 0 and win.stop > x.stop:  # the wavefront's head reaches new frames: their initial noise
            x.extend(source.take(win.stop).to(device, dtype))
        v = predict_window(j, x.t if single else x[win.start, win.stop], float(sigmas[step]))
        if not single:
            sums = acc[step]
            if win.stop > sums.stop:
                sums.extend(torch.zeros_like(x.t[:, :, :win.stop - sums.stop]))
            wt = weights[j, win.start:win.stop].to(x.t.device, x.t.dtype).view(1, 1, -1, 1, 1)
            sums[win.start, win.stop].add_(wt * v.to(x.t.dtype))
        next_window[step] += 1
        if step + 1 == steps and retire is not None:
            retire(j)
        a, b = final[step], covered(step)
        if b > a:
            out = finish(step, a, b, v if single else acc[step][a, b])
            final[step] = b
            if not single:
                acc[step].drop_before(b)
            if out is not None:
                x.drop_before(b)  # finished: handed out and never read again
                yield a, out
        progress.tick()
