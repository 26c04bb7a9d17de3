"""Gaussian noise for a whole video, handed out a range of frames at a time, equal to one ``torch.randn`` draw.

The few-step student re-noises the whole video after each step with one ``torch.randn(shape, generator=g)``.
The streaming sampler needs that draw a few frames at a time, and holding it whole costs memory in
proportion to the video's length (for each step at once). PyTorch's CPU ``randn`` fills its output with one
uniform draw per element, in order, then turns each aligned block of 16 into normals (Box-Muller on pairs
within the block). So the elements of one row of the tensor (one channel: all frames) can be drawn later from
a copy of the generator positioned at that row's start, as long as every piece starts on a multiple of 16
elements of the whole tensor. ``FrameNoise`` keeps one such generator per row and draws each piece when
it is asked for; where the alignment does not hold it falls back to the whole draw.
"""

from __future__ import annotations

import math

import torch

_BLOCK = 16           # randn's Box-Muller block: pieces must start on these boundaries
_SKIP = 1 << 20       # elements drawn at a time while moving a generator past a row


def _piecewise_ok(shape: tuple[int, ...], generator: torch.Generator) -> bool:
    """Whether every frame boundary of every row falls on a block boundary of the whole draw (CPU generators)."""
    frame = math.prod(shape[3:])
    return generator.device.type == "cpu" and len(shape) >= 3 and frame % _BLOCK == 0


class FrameNoise:
    """``torch.randn(shape, generator=generator)`` (float32, dim 2 = frames), read in increasing frame ranges.

    Creating it moves ``generator`` past the whole draw, as ``torch.randn`` would; the values come out when
    ``take`` is called, so memory holds one piece instead of the whole video."""

    def __init__(self, shape: tuple[int, ...], generator: torch.Generator):
        self.shape = tuple(shape)
        self.next_frame = 0
        self._whole: torch.Tensor | None = None
        self._rows: list[torch.Generator] = []
        if not _piecewise_ok(self.shape, generator):
            self._whole = torch.randn(self.shape, generator=generator, dtype=torch.float32)
            return
        row = math.prod(self.shape[2:])
        for _ in range(math.prod(self.shape[:2])):
            cursor = torch.Generator()
            cursor.set_state(generator.get_state())
            self._rows.append(cursor)
            left = row
            while left:  # the same number of uniform draws as the row takes, in block-aligned pieces
                n = min(left, _SKIP)
                torch.randn(n, generator=generator, dtype=torch.float32)
                left -= n

    def take(self, stop: int) -> torch.Tensor:
        """The draw's frames [next_frame, stop) as (..., stop - next_frame, ...); ranges must come in order."""
        start = self.next_frame
        if not start < stop <= self.shape[2]:
            raise ValueError(f"noise frames must be taken in order: asked for {start}..{stop} of {self.shape[2]}")
        self.next_frame = stop
        if self._whole is not None:
            return self._whole[:, :, start:stop]
        frame_shape = self.shape[3:]
        rows = [torch.randn((stop - start) * math.prod(frame_shape), generator=g, dtype=torch.float32)
                for g in self._rows]
        return torch.stack(rows).view(*self.shape[:2], stop - start, *frame_shape)
