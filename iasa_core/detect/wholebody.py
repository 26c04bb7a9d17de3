"""DWPose WholeBody (RTMPose-l, 133 COCO-WholeBody points, SimCC head) on person boxes.

Reference: DWPose ``annotator/dwpose/onnxpose.py`` and controlnet_aux
``dwpose/dw_torchscript/jit_pose.py`` (same maths). Per box x1y1x2y2:

1. centre = box midpoint, scale = (w, h) * 1.25; scale widened or heightened to the input's
   aspect w / h = 288 / 384 = 0.75 (never shrunk).
2. Affine crop (no rotation) that maps the centre to the input centre and ``scale`` pixels onto
   288 x 384: x' = s (x - cx) + 144, y' = s (y - cy) + 192, s = 288 / scale_w; bilinear, border 0
   (cv2.warpAffine INTER_LINEAR), uint8 result.
3. (pixel - mean) / std per channel, image channels as given (RGB): mean 123.675, 116.28, 103.53,
   std 58.395, 57.12, 57.375; (N, 3, 384, 288) float32.
4. SimCC: outputs x (N, 133, 576) and y (N, 133, 768); location = argmax / 2.0 (split ratio),
   score = min(max_x, max_y) (raw logits: NOT bounded to [0, 1]); a location whose score is <= 0 is
   set to bin -1 as in the reference.
5. Back to the image: p = loc / (288, 384) * scale + centre - scale / 2 (the inverse of step 2).
"""

from __future__ import annotations

import numpy as np

from .runtime import Runtime

INPUT_SIZE = (288, 384)  # (width, height)
BOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
NUM_KEYPOINTS = 133


# ---------------------------------------------------------------------- boxes and affine maps


def box_to_center_scale(boxes: np.ndarray, padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) x1y1x2y2 -> centres (N, 2) and padded sizes (N, 2) as (w, h)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    center = np.stack([b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1) * 0.5
    scale = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1) * padding
    return center, scale


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """Grow (w, h) along one axis so that w / h == aspect_ratio."""
    s = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    w, h = s[:, :1], s[:, 1:]
    return np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]), np.hstack([h * aspect_ratio, h]))


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 affine map taking three points onto three points (cv2.getAffineTransform)."""
    a = np.zeros((6, 6))
    b = np.zeros(6)
    for i in range(3):
        a[2 * i, :3] = [src[i, 0], src[i, 1], 1.0]
        a[2 * i + 1, 3:] = [src[i, 0], src[i, 1], 1.0]
        b[2 * i], b[2 * i + 1] = dst[i]
    return np.linalg.solve(a, b).reshape(2, 3)


def crop_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """Image -> crop 2x3 affine map of one box (no rotation), built like the reference.

    The reference passes three float32 points (centre, centre + (0, -w/2), and that vector turned
    by 90 degrees) through cv2.getAffineTransform; the same is done here so that float rounding
    matches too.
    """
    c = np.asarray(center, dtype=np.float64)
    sw = float(np.asarray(scale, dtype=np.float64)[0])
    dw, dh = float(output_size[0]), float(output_size[1])
    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = c
    src[1] = c + np.array([0.0, -0.5 * sw])
    d = src[0] - src[1]
    src[2] = src[1] + np.array([-d[1], d[0]])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [dw * 0.5, dh * 0.5]
    dst[1] = dst[0] + np.array([0.0, -0.5 * dw])
    d = dst[0] - dst[1]
    dst[2] = dst[1] + np.array([-d[1], d[0]])
    return _affine_from_points(src.astype(np.float64), dst.astype(np.float64))


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine map (cv2.invertAffineTransform)."""
    m = np.asarray(m, dtype=np.float64)
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22, a12, a21 = m[1, 1] * det, m[0, 0] * det, -m[0, 1] * det, -m[1, 0] * det
    b1 = -a11 * m[0, 2] - a12 * m[1, 2]
    b2 = -a21 * m[0, 2] - a22 * m[1, 2]
    return np.array([[a11, a12, b1], [a21, a22, b2]])


def warp_affine(image: np.ndarray, m: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.warpAffine(image, m, (width, height), flags=INTER_LINEAR)`` for (H, W, C) uint8.

    Bilinear, neighbours outside the image read as 0 (BORDER_CONSTANT), computed in float32 and
    rounded to uint8 -- as OpenCV 5's warpAffine does. Checked against opencv-python-headless 5.0:
    at most 1 grey level apart on < 0.5 % of pixels. Older OpenCV releases quantise source
    coordinates to 1/32 pixel (fixed point): on noise images they differ from this by a few grey
    levels, on photos by about 1.
    """
    inv = invert_affine(m).astype(np.float32)
    src_h, src_w = image.shape[:2]
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx = (sx - x0)[..., None]
    fy = (sy - y0)[..., None]
    img = image if image.ndim == 3 else image[..., None]

    def tap(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        inside = (px >= 0) & (px < src_w) & (py >= 0) & (py < src_h)
        vals = img[np.clip(py, 0, src_h - 1), np.clip(px, 0, src_w - 1)].astype(np.float32)
        return vals * inside[..., None]

    out = (tap(x0, y0) * (1 - fx) * (1 - fy) + tap(x0 + 1, y0) * fx * (1 - fy)
           + tap(x0, y0 + 1) * (1 - fx) * fy + tap(x0 + 1, y0 + 1) * fx * fy)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out if image.ndim == 3 else out[..., 0]


# ---------------------------------------------------------------------- pre-processing


def preprocess(image: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int] = INPUT_SIZE,
               padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops (N, 3, h, w) float32 normalised, centres (N, 2) and aspect-fixed scales (N, 2)."""
    w, h = input_size
    center, scale = box_to_center_scale(boxes, padding)
    scale = fix_aspect_ratio(scale, w / h)
    batch = np.empty((len(center), 3, h, w), dtype=np.float32)
    for i in range(len(center)):
        crop = warp_affine(image, crop_matrix(center[i], scale[i], (w, h)), w, h)
        batch[i] = ((crop - MEAN) / STD).transpose(2, 0, 1)
    return batch, center, scale


# ---------------------------------------------------------------------- SimCC decoding


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SIMCC_SPLIT_RATIO
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Locations (N, K, 2) in crop pixels and scores (N, K) from SimCC logits."""
    sx, sy = np.asarray(simcc_x, np.float32), np.asarray(simcc_y, np.float32)
    n, k, _ = sx.shape
    locs = np.stack([sx.argmax(-1), sy.argmax(-1)], axis=-1).astype(np.float32)
    scores = np.minimum(sx.max(-1), sy.max(-1))
    locs[scores <= 0] = -1
    return locs / split_ratio, scores.reshape(n, k)


def crop_to_image(locs: np.ndarray, center: np.ndarray, scale: np.ndarray,
                  input_size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """Crop pixel locations (N, K, 2) back to image pixels (inverse of the crop map)."""
    size = np.asarray(input_size, dtype=np.float64)
    c = np.asarray(center, np.float64)[:, None, :]
    s = np.asarray(scale, np.float64)[:, None, :]
    return locs / size * s + c - s / 2


class WholeBodyPose:
    """133 keypoints (x, y, score) per person box, from a WholeBody SimCC runtime."""

    def __init__(self, runtime: Runtime, input_size: tuple[int, int] | None = None,
                 split_ratio: float = SIMCC_SPLIT_RATIO, padding: float = BOX_PADDING):
        self.runtime = runtime
        if input_size is None:
            shape = runtime.input_shape
            if shape is not None and len(shape) == 4 and shape[2] and shape[3]:
                input_size = (int(shape[3]), int(shape[2]))
            else:
                input_size = INPUT_SIZE
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.split_ratio = split_ratio
        self.padding = padding

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Keypoints (N, 133, 3) float32 for boxes (N, 4) x1y1x2y2 in image pixels."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, NUM_KEYPOINTS, 3), dtype=np.float32)
        batch, center, scale = preprocess(image, boxes, self.input_size, self.padding)
        outs = self.runtime.run_batched(batch)
        if len(outs) < 2:
            raise ValueError(f"{self.runtime!r}: a WholeBody SimCC model has two outputs (x and y), got {len(outs)}")
        simcc_x, simcc_y = outs[0], outs[1]
        w, h = self.input_size
        expect_x, expect_y = round(w * self.split_ratio), round(h * self.split_ratio)
        if simcc_x.ndim != 3 or simcc_y.ndim != 3 or simcc_x.shape[-1] != expect_x \
                or simcc_y.shape[-1] != expect_y or simcc_x.shape[:2] != simcc_y.shape[:2]:
            raise ValueError(f"{self.runtime!r}: expected SimCC outputs (N, K, {expect_x}) and (N, K, {expect_y}) "
                             f"for a {w}x{h} input, got {simcc_x.shape} and {simcc_y.shape}")
        locs, scores = decode_simcc(simcc_x, simcc_y, self.split_ratio)
        xy = crop_to_image(locs, center, scale, self.input_size)
        return np.concatenate([xy, scores[..., None]], axis=-1).astype(np.float32)
