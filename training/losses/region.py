"""Input-aware region loss of the distillation (paper eq. 5).

L_region = sum_r lambda_r * L_r(m_r * x, m_r * x_hat) over r in {face, hands, arms, body}:
an ArcFace identity distance on the face and LPIPS on the other regions, with m_r the pixel mask
of region r taken from the pose-derived label map (iasa_core.pose.layout REGION_* ids).

Choices the paper leaves open, made here and exposed in `RegionLossConfig`:

- Face distance: squared L2 between unit ArcFace embeddings (= 2 - 2 cos). The paper says "L2
  distance"; the square keeps the gradient finite where the embeddings agree (plain L2 is a
  sqrt with an infinite slope at 0).
- LPIPS crops: by default every LPIPS term is taken on a square crop around the region's mask
  (resampled to `crop_size`), not on the full masked frame. On a 480p frame a hand covers ~1 %
  of the pixels, so a full-frame LPIPS average shrinks its term ~100x and the body would swamp
  the hands whatever lambda says; cropping makes the terms comparable so lambda_r means what it
  says. Pixels outside the mask are zero in both inputs either way. `crop_to_region=False`
  gives the literal full-frame form.
- Frames without a region (fewer than `min_region_pixels` mask pixels, or, for ArcFace, no
  usable face landmarks) contribute 0; each part is the sum over frames divided by the number
  of frames, so its scale does not jump when a region appears in only some frames.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from iasa_core.pose import layout as L

from .arcface import ARCFACE_TEMPLATE, ArcFaceEmbedder, align_faces, face_landmarks5, similarity_to_template
from .lpips import LPIPS

__all__ = ["REGIONS", "RegionLoss", "RegionLossConfig", "build_region_loss", "crop_regions", "flatten_video"]

log = logging.getLogger(__name__)

REGIONS = ("face", "hands", "arms", "body")
_REGION_ID = {"face": L.REGION_FACE, "hands": L.REGION_HANDS, "arms": L.REGION_ARMS, "body": L.REGION_BODY}


@dataclass
class RegionLossConfig:
    """Per-region weights lambda_r and the knobs of how each term is measured.

    Default weights: face and hands 1.0 because they are where few-step students fail first
    (paper fig. 7 and its limitations: mouth and finger blur) and where viewers look; arms and
    body 0.5 because they are large, low-frequency areas the DMD term already keeps close to the
    teacher, so full weight there would mostly pull capacity away from face and hands. Both
    face measures (squared unit-vector distance in [0, 4], LPIPS) are O(0.1-1) for visible
    damage, so equal face/hands weights start them on a par; all four are config values.
    """

    face: float = 1.0
    hands: float = 1.0
    arms: float = 0.5
    body: float = 0.5
    face_distance: str = "l2"  # "l2": ||e - e_hat||^2 of unit embeddings; "cosine": 1 - cos
    crop_to_region: bool = True  # LPIPS on a square crop around each region's mask (see module doc)
    crop_size: int = 128  # side of the LPIPS crop in pixels
    crop_margin: float = 0.1  # crop side = (1 + 2 * margin) * longest side of the mask's box
    min_region_pixels: int = 16  # fewer mask pixels than this: the region counts as absent
    min_face_score: float = 0.3  # the five face landmarks must all score at least this for ArcFace

    def __post_init__(self) -> None:
        bad = {r: w for r, w in self.weights().items() if not w >= 0}
        if bad:
            raise ValueError(f"region weights must be >= 0, got {bad}")
        if self.face_distance not in ("l2", "cosine"):
            raise ValueError(f"face_distance must be 'l2' or 'cosine', got {self.face_distance!r}")
        if self.crop_size < 32:
            raise ValueError(f"crop_size must be >= 32 (LPIPS trunks downsample 16-32x), got {self.crop_size}")

    def weights(self) -> dict[str, float]:
        """lambda_r per region name."""
        return {r: float(getattr(self, r)) for r in REGIONS}

    def to_dict(self) -> dict:
        """Plain dict for logging and config files."""
        return asdict(self)


class RegionLoss(nn.Module):
    """Paper eq. 5; forward returns (weighted total, unweighted per-region parts)."""

    def __init__(self, config: RegionLossConfig | None, lpips: LPIPS, arcface: ArcFaceEmbedder | None = None) -> None:
        super().__init__()
        self.config = config or RegionLossConfig()
        self.lpips = lpips
        self.arcface = arcface
        if arcface is None and self.config.face > 0:
            # Logged once per loss object, i.e. once per training run.
            log.warning("RegionLoss: no ArcFace model given; the face term falls back to LPIPS on the face "
                        "region (provide ArcFaceEmbedder.from_onnx('w600k_r50.onnx') for the paper's loss)")

    @property
    def face_metric(self) -> str:
        """'arcface' or 'lpips' (the fallback)."""
        return "lpips" if self.arcface is None else "arcface"

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, labels: torch.Tensor,
                keypoints: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x generated (N, 3, H, W) in [-1, 1], x_hat target, labels (N, H, W) region ids, keypoints (N, 133, 3)."""
        n, h, w = self._check(x, x_hat, labels, keypoints)
        # An empty slice sums to an exact 0 that is still attached to x, so backward() works
        # even when no region is present anywhere in the batch.
        total = x[..., :0].sum().float()
        parts: dict[str, torch.Tensor] = {}
        for name, weight in self.config.weights().items():
            if weight == 0:
                parts[name] = x.new_zeros((), dtype=torch.float32)
                continue
            mask = (labels == _REGION_ID[name]).unsqueeze(1)
            present = mask.flatten(1).sum(1) >= self.config.min_region_pixels
            if name == "face" and self.arcface is not None:
                present = present & self._face_usable(keypoints)
            idx = present.nonzero().flatten()
            if idx.numel() == 0:
                parts[name] = x.new_zeros((), dtype=torch.float32)
                continue
            m = mask[idx].to(x.dtype)
            a, b = x[idx] * m, x_hat[idx].to(x.dtype) * m
            if name == "face" and self.arcface is not None:
                per_frame = self._face_distance(a, b, keypoints[idx])
            else:
                per_frame = self._lpips(a, b, mask[idx, 0])
            parts[name] = per_frame.float().sum() / n
            total = total + weight * parts[name]
        return total, parts

    def forward_video(self, x: torch.Tensor, x_hat: torch.Tensor, labels: torch.Tensor,
                      keypoints: torch.Tensor | None = None, frame_stride: int = 1,
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Same loss on videos: x, x_hat (B, 3, T, H, W), labels (B, T, H, W), keypoints (B, T, 133, 3)."""
        fx, fxh, fl, fk = flatten_video(x, x_hat, labels, keypoints, frame_stride=frame_stride)
        return self(fx, fxh, fl, fk)

    # ---- terms ------------------------------------------------------------------------------

    def _face_usable(self, keypoints: torch.Tensor | None) -> torch.Tensor:
        if keypoints is None:
            raise ValueError("RegionLoss with ArcFace needs keypoints (N, 133, 3) to align the faces")
        pts, scores = face_landmarks5(keypoints.detach())
        # Landmarks that collapse to a point (no face detected) admit no alignment.
        _, valid = similarity_to_template(pts, ARCFACE_TEMPLATE.to(pts.device))
        return valid & (scores.amin(1) >= self.config.min_face_score)

    def _face_distance(self, a: torch.Tensor, b: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        size = self.arcface.input_size
        crops = align_faces(torch.cat([a, b]), torch.cat([keypoints, keypoints]), size=size)
        emb = self.arcface(crops)
        e, e_hat = emb[: a.shape[0]], emb[a.shape[0]:]
        if self.config.face_distance == "cosine":
            return 1.0 - (e * e_hat).sum(1)
        return (e - e_hat).pow(2).sum(1)

    def _lpips(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.config.crop_to_region:
            return self.lpips(a, b)
        ca, cb = crop_regions(a, b, mask, self.config.crop_size, self.config.crop_margin)
        return self.lpips(ca, cb)

    @staticmethod
    def _check(x: torch.Tensor, x_hat: torch.Tensor, labels: torch.Tensor,
               keypoints: torch.Tensor | None) -> tuple[int, int, int]:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape != x_hat.shape:
            raise ValueError(f"x and x_hat must both be (N, 3, H, W), got {tuple(x.shape)} and {tuple(x_hat.shape)}")
        n, _, h, w = x.shape
        if tuple(labels.shape) != (n, h, w):
            raise ValueError(f"labels must be (N, H, W) = {(n, h, w)} at the frame resolution, "
                             f"got {tuple(labels.shape)}")
        if keypoints is not None and (keypoints.dim() != 3 or keypoints.shape[:2] != (n, L.NUM_KEYPOINTS)):
            raise ValueError(f"keypoints must be (N, 133, 3), got {tuple(keypoints.shape)}")
        return n, h, w

    def extra_repr(self) -> str:
        return f"face_metric={self.face_metric}, config={self.config}"


def build_region_loss(cfg: object) -> RegionLoss:
    """RegionLoss from a trainer config (training.config.RegionConfig or anything with its fields).

    Reads face/hands/arms/body (lambda_r), lpips_net, lpips_backbone + lpips_lin (local files) and
    arcface (local .onnx); any other RegionLossConfig field present on cfg is passed through.
    """
    fields = RegionLossConfig.__dataclass_fields__
    config = RegionLossConfig(**{k: getattr(cfg, k) for k in fields if hasattr(cfg, k)})
    net = getattr(cfg, "lpips_net", "alex")
    backbone, lin = getattr(cfg, "lpips_backbone", None), getattr(cfg, "lpips_lin", None)
    if (backbone is None) != (lin is None):
        raise ValueError(f"give both lpips_backbone and lpips_lin or neither (got {backbone!r}, {lin!r})")
    if backbone is None:
        # Random features measure *something* but not perception: fine for smoke runs, not for training.
        log.warning("RegionLoss: LPIPS with random weights (lpips_backbone/lpips_lin not set); "
                    "set them to torchvision's trunk and lpips' v0.1 heads for real training")
        lpips = LPIPS(net)
    else:
        lpips = LPIPS.from_files(net, backbone, lin)
    arcface_path = getattr(cfg, "arcface", None)
    arcface = ArcFaceEmbedder.from_onnx(arcface_path) if arcface_path else None
    return RegionLoss(config, lpips, arcface)


def crop_regions(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, size: int,
                 margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Square crops (N, 3, size, size) of a and b around each frame's mask (N, H, W) bounding box."""
    n, _, h, w = a.shape
    rows, cols = mask.any(2), mask.any(1)
    ar_h = torch.arange(h, device=mask.device)
    ar_w = torch.arange(w, device=mask.device)
    y0 = torch.where(rows, ar_h, h).amin(1).double()
    y1 = torch.where(rows, ar_h, -1).amax(1).double()
    x0 = torch.where(cols, ar_w, w).amin(1).double()
    x1 = torch.where(cols, ar_w, -1).amax(1).double()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = torch.maximum(x1 - x0 + 1, y1 - y0 + 1) * (1 + 2 * margin)
    # Box-filter before strong downscaling so every pixel of the region receives gradient
    # (bilinear sampling alone would read only ~4 of every factor^2 pixels). Frames are grouped
    # by their integer downscale factor.
    factor = torch.clamp(torch.floor(side / size), min=1).long()
    out_a = a.new_empty(n, a.shape[1], size, size)
    out_b = b.new_empty(n, b.shape[1], size, size)
    for f in factor.unique().tolist():
        sel = (factor == f).nonzero().flatten()
        sa, sb = a[sel], b[sel]
        if f > 1:
            sa = F.avg_pool2d(sa, f, stride=f, ceil_mode=True)
            sb = F.avg_pool2d(sb, f, stride=f, ceil_mode=True)
        hp, wp = sa.shape[-2:]
        # Pooled pixel q covers source pixels f*q .. f*q + f - 1, centred at f*q + (f - 1) / 2.
        pcx, pcy, pside = (cx[sel] - (f - 1) / 2) / f, (cy[sel] - (f - 1) / 2) / f, side[sel] / f
        theta = torch.zeros(len(sel), 2, 3, dtype=torch.float64, device=a.device)
        theta[:, 0, 0] = pside / wp
        theta[:, 0, 2] = (2 * pcx + 1) / wp - 1
        theta[:, 1, 1] = pside / hp
        theta[:, 1, 2] = (2 * pcy + 1) / hp - 1
        grid = F.affine_grid(theta.to(a.dtype), [len(sel), a.shape[1], size, size], align_corners=False)
        out_a[sel] = F.grid_sample(sa, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out_b[sel] = F.grid_sample(sb, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out_a, out_b


def flatten_video(x: torch.Tensor, x_hat: torch.Tensor, labels: torch.Tensor, keypoints: torch.Tensor | None = None,
                  frame_stride: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(B, 3, T, H, W) videos, (B, T, H, W) labels, (B, T, 133, 3) keypoints -> per-frame batches of B*T'."""
    if x.dim() != 5 or x.shape[1] != 3 or x.shape != x_hat.shape:
        raise ValueError(f"videos must both be (B, 3, T, H, W), got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    b, _, t, h, w = x.shape
    if tuple(labels.shape) != (b, t, h, w):
        raise ValueError(f"labels must be (B, T, H, W) = {(b, t, h, w)}, got {tuple(labels.shape)}")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    frames = slice(None, None, frame_stride)  # a stride trades loss coverage for decode/LPIPS cost

    def per_frame(v: torch.Tensor) -> torch.Tensor:
        v = v[:, :, frames].transpose(1, 2)
        return v.reshape(-1, *v.shape[2:])

    lab = labels[:, frames].reshape(-1, h, w)
    kps = None if keypoints is None else keypoints[:, frames].reshape(-1, *keypoints.shape[2:])
    return per_frame(x), per_frame(x_hat), lab, kps
