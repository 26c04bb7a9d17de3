"""Body-region masks (face, hands, arms, body) from WholeBody-133 keypoints, on any point grid."""

from __future__ import annotations

import numpy as np

from . import layout as L

DEFAULT_MIN_SCORE = 0.3


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull (Andrew's monotone chain) of (P, 2) points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    # Python floats: the same float64 arithmetic as numpy scalars, without their per-operation overhead
    # (masks for every frame of a video build thousands of small hulls)
    rows = sorted(set(map(tuple, pts.tolist())))
    if len(rows) <= 2:
        return np.array(rows, dtype=np.float64).reshape(-1, 2)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for px, py in seq:
            while len(out) >= 2:
                (ox, oy), (ax, ay) = out[-2], out[-1]
                if (ax - ox) * (py - oy) - (ay - oy) * (px - ox) > 0:
                    break
                out.pop()
            out.append((px, py))
        return out

    lower, upper = half(rows), half(rows[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from every point p (N, 2) to every segment a[m]-b[m]; returns (N, M)."""
    # x and y written out: numpy's sum over an axis of two is several times slower than one addition
    abx, aby = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    apx, apy = p[:, None, 0] - a[None, :, 0], p[:, None, 1] - a[None, :, 1]
    denom = np.maximum(abx**2 + aby**2, 1e-12)
    t = np.clip((apx * abx + apy * aby) / denom, 0.0, 1.0)
    dx, dy = apx - t * abx, apy - t * aby
    return np.sqrt(dx**2 + dy**2)


def _near_box(points: np.ndarray, shape_pts: np.ndarray, pad: float) -> np.ndarray:
    """Indices of points inside the shape's bounding box grown by ``pad`` (cheap pre-filter)."""
    lo, hi = shape_pts.min(0) - pad, shape_pts.max(0) + pad
    x, y = points[:, 0], points[:, 1]
    return np.nonzero((x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]))[0]


def polygon_cover(points: np.ndarray, hull: np.ndarray, margin: float) -> np.ndarray:
    """Boolean (N,): points inside the convex ``hull`` or within ``margin`` of it."""
    out = np.zeros(len(points), dtype=bool)
    if len(hull) == 0:
        return out
    sel = _near_box(points, hull, margin)
    p = points[sel]
    a, b = hull, np.roll(hull, -1, axis=0)
    hit = segment_distance(p, a, b).min(-1) <= margin
    if len(hull) >= 3:
        edge = b - a
        rel = p[:, None, :] - a[None]
        hit |= (edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0] >= 0).all(-1)
    out[sel] = hit
    return out


def capsule_cover(points: np.ndarray, segments: list[tuple[np.ndarray, np.ndarray]],
                  radius: float) -> np.ndarray:
    """Boolean (N,): points within ``radius`` of any of the segments."""
    out = np.zeros(len(points), dtype=bool)
    if not segments:
        return out
    a = np.array([s[0] for s in segments], dtype=np.float64)
    b = np.array([s[1] for s in segments], dtype=np.float64)
    sel = _near_box(points, np.concatenate([a, b]), radius)
    out[sel] = (segment_distance(points[sel], a, b) <= radius).any(-1)
    return out


def frame_region_masks(kp: np.ndarray, points: np.ndarray, cell: float,
                       min_score: float = DEFAULT_MIN_SCORE) -> dict[int, np.ndarray]:
    """Masks {region id: (N,) bool} of one frame's keypoints (133, 3) over grid ``points``.

    ``cell`` is the grid spacing in pixels: shapes are grown by half a cell so that a small
    hand still claims the cells it touches. Face and hands are filled convex hulls; arms are
    capsules through shoulder-elbow-wrist; body is the torso (shoulders to hips, or downwards
    from the shoulders when the hips are cropped out of the frame).
    """
    ok = kp[:, 2] >= min_score
    xy = kp[:, :2].astype(np.float64)
    margin = 0.5 * cell
    masks: dict[int, np.ndarray] = {}

    def hull_of(idx):
        sel = [i for i in idx if ok[i]]
        return convex_hull(xy[sel]) if sel else np.zeros((0, 2))

    masks[L.REGION_FACE] = polygon_cover(points, hull_of(L.FACE), margin)
    masks[L.REGION_HANDS] = polygon_cover(points, hull_of(L.LEFT_HAND), margin) | polygon_cover(
        points, hull_of(L.RIGHT_HAND), margin)

    sho_w = np.linalg.norm(xy[L.L_SHOULDER] - xy[L.R_SHOULDER]) if ok[L.L_SHOULDER] and ok[
        L.R_SHOULDER] else 0.0
    segs = []
    for chain in ((L.L_SHOULDER, L.L_ELBOW, L.L_WRIST), (L.R_SHOULDER, L.R_ELBOW, L.R_WRIST)):
        for i, j in zip(chain[:-1], chain[1:], strict=True):
            if ok[i] and ok[j]:
                segs.append((xy[i], xy[j]))
    masks[L.REGION_ARMS] = capsule_cover(points, segs, max(margin, 0.12 * sho_w))

    if sho_w > 0:
        torso = [xy[L.L_SHOULDER], xy[L.R_SHOULDER]]
        if ok[L.L_HIP] and ok[L.R_HIP]:
            torso += [xy[L.L_HIP], xy[L.R_HIP]]
        else:
            down = np.array([0.0, 1.5 * sho_w])
            torso += [xy[L.L_SHOULDER] + down, xy[L.R_SHOULDER] + down]
        masks[L.REGION_BODY] = polygon_cover(points, convex_hull(np.array(torso)), margin)
    else:
        masks[L.REGION_BODY] = np.zeros(len(points), dtype=bool)
    return masks


def label_map(masks: dict[int, np.ndarray], regions: tuple[str, ...] = L.ALL_REGIONS) -> np.ndarray:
    """Collapse region masks into one int label per point (0 = background), by REGION_PRIORITY."""
    wanted = {L.REGION_IDS[r] for r in regions}
    n = len(next(iter(masks.values())))
    labels = np.zeros(n, dtype=np.int64)
    for rid in reversed(L.REGION_PRIORITY):
        if rid in wanted:
            labels[masks[rid]] = rid
    return labels


def check_regions(regions) -> tuple[str, ...]:
    """Validate region names; returns them as a tuple."""
    regions = tuple(regions)
    bad = [r for r in regions if r not in L.ALL_REGIONS]
    if bad:
        raise ValueError(f"unknown region(s) {bad}; choose from {list(L.ALL_REGIONS)}")
    return regions


def pixel_region_labels(kp: np.ndarray, out_h: int, out_w: int, cell: int = 4,
                        min_score: float = DEFAULT_MIN_SCORE) -> np.ndarray:
    """Per-pixel region labels (T, H, W) uint8 (0 background, 1 face, 2 hands, 3 arms, 4 body).

    Regions are evaluated at the centres of ``cell`` x ``cell`` pixel blocks and each block takes
    its centre's label (nearest upsampling): at 4 px cells a 512 x 512 frame costs 16k point tests
    instead of 262k, and the shapes are grown by half a cell so small hands still show.
    """
    kp = np.asarray(kp, dtype=np.float64)
    gh, gw = -(-out_h // cell), -(-out_w // cell)
    gy, gx = np.meshgrid((np.arange(gh) + 0.5) * cell - 0.5, (np.arange(gw) + 0.5) * cell - 0.5,
                         indexing="ij")
    points = np.stack([gx.ravel(), gy.ravel()], -1)
    out = np.zeros((len(kp), out_h, out_w), dtype=np.uint8)
    for t in range(len(kp)):
        lab = label_map(frame_region_masks(kp[t], points, float(cell), min_score=min_score))
        grid = lab.reshape(gh, gw).astype(np.uint8)
        out[t] = np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)[:out_h, :out_w]
    return out
