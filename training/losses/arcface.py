"""ArcFace identity embeddings for the face term of the region loss, with differentiable alignment.

The recognition network is an insightface ONNX model (buffalo_l's `w600k_r50.onnx` by default)
re-executed in torch by `OnnxModule`, so gradients reach the generated frame. Faces are aligned
the way insightface does it (a least-squares similarity from five landmarks onto the 112x112
ArcFace template), but with `affine_grid`/`grid_sample` instead of cv2 so the warp is
differentiable too. The five landmarks come from the WholeBody-133 face points.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .onnx_torch import OnnxModule, load_onnx

__all__ = [
    "ARCFACE_TEMPLATE",
    "ArcFaceEmbedder",
    "align_faces",
    "face_landmarks5",
    "similarity_to_template",
]

# insightface's 112x112 destination points: image-left eye, image-right eye, nose tip,
# image-left mouth corner, image-right mouth corner (x, y in pixels, pixel centres at integers).
ARCFACE_TEMPLATE = torch.tensor([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
])

# WholeBody face points are 23 + the 68-point iBUG index. iBUG 36-41 is the subject's right eye,
# which is on the image left for a frontal face, i.e. the template's first point; likewise mouth
# corner 48 (subject's right) pairs with template point 3.
_FACE0 = 23
_IMAGE_LEFT_EYE = tuple(range(_FACE0 + 36, _FACE0 + 42))
_IMAGE_RIGHT_EYE = tuple(range(_FACE0 + 42, _FACE0 + 48))
_NOSE_TIP = _FACE0 + 30
_IMAGE_LEFT_MOUTH = _FACE0 + 48
_IMAGE_RIGHT_MOUTH = _FACE0 + 54

WEIGHTS_HINT = (
    "get insightface's buffalo_l model pack (https://github.com/deepinsight/insightface/releases, "
    "buffalo_l.zip) and put its recognition model w600k_r50.onnx at that path (for instance "
    "models/insightface/w600k_r50.onnx); any insightface ArcFace recognition .onnx works")


def face_landmarks5(keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Five ArcFace landmarks (N, 5, 2) and their scores (N, 5) from WholeBody (N, 133, 3) keypoints."""
    if keypoints.dim() != 3 or keypoints.shape[1] != 133 or keypoints.shape[2] < 2:
        raise ValueError(f"expected WholeBody keypoints (N, 133, 2|3), got {tuple(keypoints.shape)}")
    kp = keypoints.float()
    xy = kp[..., :2]
    sc = kp[..., 2] if kp.shape[2] > 2 else torch.ones_like(kp[..., 0])
    pts = torch.stack([
        xy[:, _IMAGE_LEFT_EYE].mean(1), xy[:, _IMAGE_RIGHT_EYE].mean(1), xy[:, _NOSE_TIP],
        xy[:, _IMAGE_LEFT_MOUTH], xy[:, _IMAGE_RIGHT_MOUTH],
    ], dim=1)
    # An eye centre is only as trustworthy as its least confident contour point.
    scores = torch.stack([
        sc[:, _IMAGE_LEFT_EYE].amin(1), sc[:, _IMAGE_RIGHT_EYE].amin(1), sc[:, _NOSE_TIP],
        sc[:, _IMAGE_LEFT_MOUTH], sc[:, _IMAGE_RIGHT_MOUTH],
    ], dim=1)
    return pts, scores


def similarity_to_template(points: torch.Tensor, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity (N, 2, 3) mapping points (N, P, 2) onto template (P, 2), plus a valid flag.

    In 2-D, Umeyama's rotation + uniform scale + translation fit has the closed form below
    (z -> a z + t with complex a): no SVD, batched, and never a reflection.
    """
    src = points.double()
    dst = template.to(src).expand_as(src)
    src_c = src - src.mean(1, keepdim=True)
    dst_c = dst - dst.mean(1, keepdim=True)
    var = (src_c ** 2).sum(dim=(1, 2))
    # Coincident landmarks (absent face) have no defined fit; flag them and use a unit transform.
    valid = var > 1e-6
    safe = torch.where(valid, var, torch.ones_like(var))
    a = (src_c[..., 0] * dst_c[..., 0] + src_c[..., 1] * dst_c[..., 1]).sum(1) / safe
    b = (src_c[..., 0] * dst_c[..., 1] - src_c[..., 1] * dst_c[..., 0]).sum(1) / safe
    a = torch.where(valid, a, torch.ones_like(a))
    b = torch.where(valid, b, torch.zeros_like(b))
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # (N, 2, 2)
    t = dst.mean(1) - (rot @ src.mean(1).unsqueeze(-1)).squeeze(-1)
    return torch.cat([rot, t.unsqueeze(-1)], -1).to(points.dtype), valid


def align_faces(images: torch.Tensor, keypoints: torch.Tensor, size: int = 112) -> torch.Tensor:
    """Warp (N, 3, H, W) images to (N, 3, size, size) ArcFace crops using WholeBody (N, 133, 3) keypoints."""
    if images.dim() != 4 or images.shape[0] != keypoints.shape[0]:
        raise ValueError(f"images (N, C, H, W) and keypoints (N, 133, 3) disagree: "
                         f"{tuple(images.shape)} vs {tuple(keypoints.shape)}")
    n, _, h, w = images.shape
    pts, _ = face_landmarks5(keypoints.detach())
    # insightface scales the template for crops other than 112 (ratio = size / 112).
    m, _ = similarity_to_template(pts.double(), ARCFACE_TEMPLATE.double() * (size / 112.0))
    theta = _crop_theta(m, (h, w), size)
    grid = F.affine_grid(theta.to(images.dtype), [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _crop_theta(m: torch.Tensor, hw: tuple[int, int], size: int) -> torch.Tensor:
    """affine_grid theta (N, 2, 3) sampling the source at M^-1 for every crop pixel (align_corners=False)."""
    n = m.shape[0]
    h, w = hw
    m3 = torch.cat([m.double(), m.new_tensor([0.0, 0.0, 1.0]).double().expand(n, 1, 3)], 1)
    # crop normalised -> crop pixel: u = ((g + 1) * size - 1) / 2; pixel centres at integers.
    out_px = m3.new_tensor([[size / 2, 0, (size - 1) / 2], [0, size / 2, (size - 1) / 2], [0, 0, 1]])
    # source pixel -> source normalised: g = (2 p + 1) / W - 1.
    in_norm = m3.new_tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
    theta = in_norm @ torch.linalg.inv(m3) @ out_px
    return theta[:, :2]


class ArcFaceEmbedder(nn.Module):
    """Aligned RGB face crops (N, 3, S, S) in [-1, 1] -> L2-normalised ArcFace embeddings (N, D)."""

    def __init__(self, net: nn.Module, input_size: int = 112, embedding_dim: int | None = None,
                 raw_pixels: bool = False) -> None:
        super().__init__()
        self.net = net
        self.input_size = int(input_size)
        # mxnet-converted models normalise inside the graph and expect 0..255 pixels.
        self.raw_pixels = bool(raw_pixels)
        if embedding_dim is None:
            with torch.no_grad():
                probe = torch.zeros(1, 3, self.input_size, self.input_size)
                embedding_dim = int(self._run(probe).shape[-1])
        self.embedding_dim = int(embedding_dim)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_onnx(cls, path: str | Path) -> ArcFaceEmbedder:
        """Load an insightface recognition .onnx from a local path (never downloads)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ArcFace model not found: {path}; {WEIGHTS_HINT}")
        proto = load_onnx(path)
        net = OnnxModule(proto, source=str(path))
        shape = net.input_shapes[0] if net.input_shapes else ()
        size = shape[2] if len(shape) == 4 and shape[2] else 112
        if len(shape) == 4 and shape[3] and shape[3] != size:
            raise ValueError(f"{path}: non-square ArcFace input {shape[2:]} is not supported")
        out = net.output_shapes[0] if net.output_shapes else ()
        dim = out[-1] if out and out[-1] else None
        return cls(net, input_size=size, embedding_dim=dim, raw_pixels=_has_input_normalisation(proto))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        out = out[0] if isinstance(out, tuple) else out
        return out.reshape(out.shape[0], -1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Embed aligned RGB crops in [-1, 1]."""
        s = self.input_size
        if faces.dim() != 4 or faces.shape[1:] != (3, s, s):
            raise ValueError(f"ArcFace expects (N, 3, {s}, {s}) aligned crops, got {tuple(faces.shape)}")
        # insightface feeds (pixel - 127.5) / 127.5 of the RGB image (cv2 BGR + swapRB), which is
        # exactly our [-1, 1] RGB range; graphs with their own Sub/Mul want the raw pixels.
        x = (faces + 1.0) * 127.5 if self.raw_pixels else faces
        dtype = next((p.dtype for p in self.net.parameters()), faces.dtype)
        return F.normalize(self._run(x.to(dtype)).float(), dim=1, eps=1e-12)


def _has_input_normalisation(proto) -> bool:
    """insightface's own test: a Sub and a Mul among the first 8 node names means mxnet-style input."""
    names = [n.name for n in proto.graph.node[:8]]
    has_sub = any(nm.startswith(("Sub", "_minus")) for nm in names)
    has_mul = any(nm.startswith(("Mul", "_mul")) for nm in names)
    return has_sub and has_mul
