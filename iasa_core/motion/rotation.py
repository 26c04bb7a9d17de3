"""Rotation conversions used by EMAGE: axis-angle, quaternion, 3x3 matrix and the 6-D form.

The 6-D form is the first two ROWS of the rotation matrix (Zhou et al. 2019), which is what
EMAGE's VQ-VAEs read and write. The quaternion route from a matrix takes the sign of each
vector component from the off-diagonal differences; for rotations near 180 degrees an
axis-angle vector and its negation describe the same rotation, and this choice of route
decides which one comes out. EMAGE's released outputs follow this route, so we do too (the
comparison with the reference is element-wise on axis-angle vectors). The same route takes
each component from sqrt(1 +- diagonal terms), which cancels in float32 for small components
(about 4e-4 rad of error; 1e-7 in float64): pass float64 where that matters.

All functions work on torch tensors with any leading shape and keep dtype and device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SMALL_ANGLE = 1e-6


def _sin_half_over_angle(angle: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """sin(angle / 2) / angle, with its Taylor series 1/2 - angle^2/48 near zero."""
    small = angle.abs() < _SMALL_ANGLE
    safe = torch.where(small, torch.ones_like(angle), angle)
    return torch.where(small, 0.5 - angle * angle / 48, torch.sin(half) / safe)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 4) unit quaternion, real part first."""
    angle = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True)
    half = 0.5 * angle
    scale = _sin_half_over_angle(angle, half)
    return torch.cat([torch.cos(half), axis_angle * scale], dim=-1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion, real part first -> (..., 3) axis-angle (angle not wrapped to pi)."""
    vec = quaternion[..., 1:]
    norm = torch.linalg.vector_norm(vec, dim=-1, keepdim=True)
    half = torch.atan2(norm, quaternion[..., :1])
    angle = 2 * half
    return vec / _sin_half_over_angle(angle, half)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (need not be unit) -> (..., 3, 3) rotation matrix."""
    w, x, y, z = torch.unbind(quaternion, -1)
    s = 2.0 / (quaternion * quaternion).sum(-1)
    rows = (
        1 - s * (y * y + z * z),
        s * (x * y - z * w),
        s * (x * z + y * w),
        s * (x * y + z * w),
        1 - s * (x * x + z * z),
        s * (y * z - x * w),
        s * (x * z - y * w),
        s * (y * z + x * w),
        1 - s * (x * x + y * y),
    )
    return torch.stack(rows, -1).reshape(quaternion.shape[:-1] + (3, 3))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrix -> (..., 4) quaternion, real part first and >= 0.

    Magnitudes come from the diagonal; the vector part's signs from the antisymmetric part
    (a zero difference counts as positive).
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"expected (..., 3, 3) rotation matrices, got shape {tuple(matrix.shape)}")
    m00, m11, m22 = matrix[..., 0, 0], matrix[..., 1, 1], matrix[..., 2, 2]

    def half_sqrt(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.sqrt(torch.clamp(v, min=0.0))

    def signed(mag: torch.Tensor, sign_of: torch.Tensor) -> torch.Tensor:
        return torch.where(sign_of < 0, -mag, mag)

    w = half_sqrt(1 + m00 + m11 + m22)
    x = signed(half_sqrt(1 + m00 - m11 - m22), matrix[..., 2, 1] - matrix[..., 1, 2])
    y = signed(half_sqrt(1 - m00 + m11 - m22), matrix[..., 0, 2] - matrix[..., 2, 0])
    z = signed(half_sqrt(1 - m00 - m11 + m22), matrix[..., 1, 0] - matrix[..., 0, 1])
    return torch.stack((w, x, y, z), -1)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    return quaternion_to_matrix(axis_angle_to_quaternion(axis_angle))


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) two matrix rows -> (..., 3, 3) by Gram-Schmidt; the third row is their cross product."""
    r1 = F.normalize(rot6d[..., :3], dim=-1)
    a2 = rot6d[..., 3:]
    r2 = F.normalize(a2 - (r1 * a2).sum(-1, keepdim=True) * r1, dim=-1)
    r3 = torch.linalg.cross(r1, r2, dim=-1)
    return torch.stack((r1, r2, r3), dim=-2)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    return matrix[..., :2, :].reshape(matrix.shape[:-2] + (6,))


def rot6d_to_axis_angle(rot6d: torch.Tensor) -> torch.Tensor:
    return matrix_to_axis_angle(rot6d_to_matrix(rot6d))


def axis_angle_to_rot6d(axis_angle: torch.Tensor) -> torch.Tensor:
    return matrix_to_rot6d(axis_angle_to_matrix(axis_angle))
