"""Pictures of a sparse plan: the block pattern with frame boundaries, and token region maps."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ..pose import layout as L
from .plan import SparsePlan

_WITHIN_FRAME = (150, 150, 150)
_EMPTY = (255, 255, 255)
_BOUNDARY = (0, 0, 0)


def block_pattern_image(plan: SparsePlan, max_side: int = 1024) -> Image.Image:
    """The (nb x nb) block mask: grey = within one frame, coloured = across frames by region.

    Partly allowed blocks are drawn in a paler shade; black lines mark latent-frame starts.
    """
    nb = plan.num_blocks
    hist = plan.block_histogram()  # (nb, T, R)
    frames_of = hist.sum(2) > 0  # (nb, T)
    region_counts = hist.sum(1)[:, 1:]  # (nb, R-1), background left out
    dominant = np.where(region_counts.sum(1) > 0, region_counts.argmax(1) + 1, L.BACKGROUND)
    same_frame = (frames_of.astype(np.int64) @ frames_of.T.astype(np.int64)) > 0
    palette = np.array([L.REGION_COLORS[r] for r in range(L.NUM_REGION_LABELS)], dtype=np.float64)

    img = np.full((nb, nb, 3), _EMPTY, dtype=np.float64)
    cross = palette[dominant][:, None, :].repeat(nb, 1)
    colour = np.where(same_frame[..., None], np.array(_WITHIN_FRAME, dtype=np.float64), cross)
    partial = plan.block_mask & ~plan.block_full
    colour = np.where(partial[..., None], 0.55 * colour + 0.45 * 255, colour)
    img[plan.block_mask] = colour[plan.block_mask]

    scale = max(1, max_side // max(nb, 1))
    side = nb * scale
    pic = Image.fromarray(img.astype(np.uint8)).resize((side, side), Image.NEAREST)
    draw = ImageDraw.Draw(pic)
    n = plan.grid.tokens_per_frame
    for f in range(1, plan.grid.latent_frames):
        pos = f * n / plan.block_size * scale
        draw.line([(pos, 0), (pos, side)], fill=_BOUNDARY, width=1)
        draw.line([(0, pos), (side, pos)], fill=_BOUNDARY, width=1)
    return pic


def region_map_image(plan: SparsePlan, frame: int, cell: int = 8) -> Image.Image:
    """One latent frame's token region labels, ``cell`` pixels per token."""
    h, w = plan.grid.token_hw
    n = plan.grid.tokens_per_frame
    labels = plan.token_region[frame * n:(frame + 1) * n].reshape(h, w)
    palette = np.array([L.REGION_COLORS[r] for r in range(L.NUM_REGION_LABELS)], dtype=np.uint8)
    return Image.fromarray(palette[labels]).resize((w * cell, h * cell), Image.NEAREST)


def plan_preview(plan: SparsePlan, max_side: int = 1024) -> Image.Image:
    """Block pattern on the left; region maps of the first, middle and last latent frames and a legend."""
    pattern = block_pattern_image(plan, max_side)
    t = plan.grid.latent_frames
    frames = sorted({0, t // 2, t - 1})
    h, w = plan.grid.token_hw
    cell = max(1, min(8, (pattern.height // max(len(frames), 1) - 30) // max(h, 1), 320 // max(w, 1)))
    maps = [region_map_image(plan, f, cell) for f in frames]
    panel_w = max(m.width for m in maps) + 20
    legend_h = 20 * (L.NUM_REGION_LABELS + 4)
    height = max(pattern.height, sum(m.height + 24 for m in maps) + legend_h)
    canvas = Image.new("RGB", (pattern.width + panel_w + 10, height), (255, 255, 255))
    canvas.paste(pattern, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = pattern.width + 15, 0
    for f, m in zip(frames, maps, strict=True):
        draw.text((x, y + 4), f"latent frame {f}", fill=(0, 0, 0))
        canvas.paste(m, (x, y + 20))
        y += m.height + 24
    for rid in range(L.NUM_REGION_LABELS):
        draw.rectangle([x, y + 4, x + 12, y + 16], fill=L.REGION_COLORS[rid])
        draw.text((x + 18, y + 4), L.REGION_NAMES[rid], fill=(0, 0, 0))
        y += 20
    draw.rectangle([x, y + 4, x + 12, y + 16], fill=_WITHIN_FRAME)
    draw.text((x + 18, y + 4), "within a frame", fill=(0, 0, 0))
    draw.text((x, y + 26), f"density {plan.density:.3f}  K={plan.config.top_k}  {plan.mode}", fill=(0, 0, 0))
    return canvas
