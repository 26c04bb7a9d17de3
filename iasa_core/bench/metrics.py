"""Video quality numbers against a ground truth: PSNR (whole frame or inside a mask), SSIM, a lip-sync proxy."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..pose import layout as L

SSIM_SIGMA = 1.5  # Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03
MOUTH_MARGIN = 0.35  # the mouth box is grown by this share of the lips' width on each side


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"output {a.shape} and ground truth {b.shape} must have the same shape "
                         "(frames, height, width, 3)")


def psnr(output: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 frames (T, H, W, 3) over all pixels, or over ``mask`` (T, H, W) bool; nan if empty."""
    _check_pair(output, target)
    err = (output.astype(np.float64) - target.astype(np.float64)) ** 2
    if mask is not None:
        if mask.shape != output.shape[:-1]:
            raise ValueError(f"mask {mask.shape} must be (frames, height, width) = {output.shape[:-1]}")
        if not mask.any():
            return float("nan")
        mse = err[mask].mean()
    else:
        mse = err.mean()
    return float(10.0 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def ssim(output: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM of uint8 frames (T, H, W, 3): Gaussian-window SSIM per channel and frame, averaged."""
    _check_pair(output, target)
    x = output.astype(np.float64)
    y = target.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    sigma = (0, SSIM_SIGMA, SSIM_SIGMA, 0)  # blur within each frame and channel only

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, sigma=sigma, truncate=3.5, mode="reflect")

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def region_masks(keypoints: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """Per-frame pixel masks (T, H, W) bool of the face and the hands, from the driving keypoints (T, 133, 3)."""
    from ..pose.regions import pixel_region_labels

    labels = pixel_region_labels(keypoints, height, width, cell=1)
    return {"face": labels == L.REGION_FACE, "hands": labels == L.REGION_HANDS}


def mouth_boxes(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, 4) integer boxes x0, y0, x1, y1 around the lips (WholeBody points 71-90), grown by MOUTH_MARGIN."""
    lips = np.asarray(keypoints, dtype=np.float64)[:, list(L.FACE_LIPS), :2]
    lo, hi = lips.min(1), lips.max(1)
    pad = MOUTH_MARGIN * (hi[:, 0] - lo[:, 0])[:, None]
    lo, hi = np.floor(lo - pad), np.ceil(hi + pad) + 1
    lo = np.clip(lo, 0, [width - 1, height - 1])
    hi = np.clip(hi, lo + 1, [width, height])
    return np.concatenate([lo, hi], axis=1).astype(np.int64)


def mouth_signal(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per-frame darkness of the mouth box (T,): it changes as the mouth opens (a dark inside raises it; teeth, as
    in the synthetic world, where it falls with the opening, lower it), and the truth's is the reference."""
    luma = frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    out = np.empty(len(frames))
    for t, (x0, y0, x1, y1) in enumerate(boxes):
        out[t] = 255.0 - luma[t, y0:y1, x0:x1].mean()
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two series; nan when either is constant."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


def partial_pearson(a: np.ndarray, b: np.ndarray, control: np.ndarray) -> float:
    """Correlation of ``a`` and ``b`` once what a least-squares line in ``control`` explains is taken out of both."""
    c = np.asarray(control, dtype=np.float64) - np.mean(control)
    cc = (c * c).sum()

    def rest(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64) - np.mean(v)
        if cc <= 1e-12:
            return v
        r = v - c * ((v * c).sum() / cc)
        # a series that is the control (up to scale) leaves only rounding: call it constant
        return r if (r * r).sum() > 1e-18 * (v * v).sum() else np.zeros_like(r)

    return pearson(rest(a), rest(b))


def lip_sync(output: np.ndarray, target: np.ndarray, keypoints: np.ndarray) -> float:
    """Correlation over time of the mouth opening seen in the output and in the truth, beyond a still copy's.

    The mouth box follows the driving lips, so it moves and grows over a frozen copy of the reference frame
    too, and that alone correlated 0.5 with the truth on the held-out clips: what the box sees over the
    reference frame is taken out of both series (partial correlation), so a still copy scores nan (no
    motion of its own), the truth 1."""
    _check_pair(output, target)
    boxes = mouth_boxes(keypoints, output.shape[1], output.shape[2])
    still = mouth_signal(np.broadcast_to(target[:1], target.shape), boxes)
    return partial_pearson(mouth_signal(output, boxes), mouth_signal(target, boxes), still)


def video_metrics(output: np.ndarray, target: np.ndarray, keypoints: np.ndarray) -> dict[str, float]:
    """PSNR (whole video and first frame), SSIM, face PSNR, hand PSNR and the lip-sync proxy of one video."""
    _check_pair(output, target)
    if len(keypoints) != len(output):
        raise ValueError(f"{len(keypoints)} keypoint frames for {len(output)} video frames")
    masks = region_masks(keypoints, output.shape[1], output.shape[2])
    return {"psnr": psnr(output, target), "first_psnr": psnr(output[:1], target[:1]), "ssim": ssim(output, target),
            "face_psnr": psnr(output, target, masks["face"]), "hand_psnr": psnr(output, target, masks["hands"]),
            "lip_sync": lip_sync(output, target, keypoints)}
