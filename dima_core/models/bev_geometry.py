"""BEV grid geometry: metric <-> grid coordinates, 3D pillar reference points, camera projection, ego-motion warp.

Conventions (docs/design.md, Frames and shapes; and :mod:`dima_core.models.config`):

- Ego frame: x forward, y left, z up, metres.
- A BEV map is ``(B, C, H, W)``: row ``i`` is along x (row 0 at ``x_min``), column ``j`` along y (column 0 at
  ``y_min``). Tokens are flattened row-major (``i * W + j``).
- *Grid fractions* are ``(col, row)`` in ``[0, 1]`` over the perception range: ``col = (y - y_min) / (y_max - y_min)``,
  ``row = (x - x_min) / (x_max - x_min)``. This is ``F.grid_sample``'s (width, height) order with
  ``align_corners=False``: ``grid = 2 * fraction - 1``.
- Image coordinates are ``(u, v)`` fractions of the network input width and height.

Everything here is branch-free tensor arithmetic, so it traces into ONNX with fixed shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def metric_to_fraction(xy: torch.Tensor, x_range: tuple[float, float], y_range: tuple[float, float]) -> torch.Tensor:
    """``(..., 2)`` ego-frame ``(x, y)`` metres -> ``(..., 2)`` grid fractions ``(col, row)``."""
    col = (xy[..., 1] - y_range[0]) / (y_range[1] - y_range[0])
    row = (xy[..., 0] - x_range[0]) / (x_range[1] - x_range[0])
    return torch.stack([col, row], dim=-1)


def fraction_to_metric(frac: torch.Tensor, x_range: tuple[float, float], y_range: tuple[float, float]) -> torch.Tensor:
    """``(..., 2)`` grid fractions ``(col, row)`` -> ``(..., 2)`` ego-frame ``(x, y)`` metres."""
    x = x_range[0] + frac[..., 1] * (x_range[1] - x_range[0])
    y = y_range[0] + frac[..., 0] * (y_range[1] - y_range[0])
    return torch.stack([x, y], dim=-1)


def bev_cell_centres(
    grid_size: tuple[int, int], x_range: tuple[float, float], y_range: tuple[float, float]
) -> torch.Tensor:
    """Metric centres of the BEV cells, ``(H * W, 2)`` ``(x, y)``, row-major."""
    h, w = grid_size
    xs = x_range[0] + (torch.arange(h, dtype=torch.float32) + 0.5) * (x_range[1] - x_range[0]) / h
    ys = y_range[0] + (torch.arange(w, dtype=torch.float32) + 0.5) * (y_range[1] - y_range[0]) / w
    gx, gy = torch.meshgrid(xs, ys, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(h * w, 2)


def bev_pillar_points(
    grid_size: tuple[int, int],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    z_range: tuple[float, float],
    num_z: int,
) -> torch.Tensor:
    """3D reference points, a pillar of ``num_z`` heights per BEV cell: ``(H * W, Z, 3)`` ego-frame metres."""
    centres = bev_cell_centres(grid_size, x_range, y_range)
    zs = z_range[0] + (torch.arange(num_z, dtype=torch.float32) + 0.5) * (z_range[1] - z_range[0]) / num_z
    n = centres.shape[0]
    xy = centres[:, None, :].expand(n, num_z, 2)
    z = zs[None, :, None].expand(n, num_z, 1)
    return torch.cat([xy, z], dim=-1)


def rigid_inverse(transform: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid ``(..., 4, 4)`` transforms as ``[R^T, -R^T t]`` (no ``linalg.inv``: exports to ONNX)."""
    rot = transform[..., :3, :3]
    trans = transform[..., :3, 3:]
    rot_t = rot.transpose(-1, -2)
    top = torch.cat([rot_t, -rot_t @ trans], dim=-1)
    bottom = torch.zeros_like(transform[..., 3:, :])
    bottom = bottom + torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=transform.dtype, device=transform.device)
    return torch.cat([top, bottom], dim=-2)


def project_to_cameras(
    points: torch.Tensor,
    intrinsics: torch.Tensor,
    cam_to_ego: torch.Tensor,
    image_size: tuple[int, int],
    min_depth: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ego-frame points into every camera.

    Args:
        points: ``(M, Z, 3)`` ego-frame points (shared by the batch).
        intrinsics: ``(B, N, 3, 3)`` pinhole K, already scaled to the network input ``image_size``.
        cam_to_ego: ``(B, N, 4, 4)`` camera (optical: x right, y down, z forward) -> ego.
        image_size: ``(width, height)`` of the network input in pixels.
        min_depth: points closer than this (or behind the camera) are invalid.

    Returns:
        uv: ``(B, N, M, Z, 2)`` image fractions ``(u / width, v / height)``, clamped to ``[-1, 2]`` so that invalid
            points stay finite;
        valid: ``(B, N, M, Z)`` float 1.0 where the point is in front of the camera and inside the image.
    """
    ego_to_cam = rigid_inverse(cam_to_ego)  # (B, N, 4, 4)
    m, z, _ = points.shape
    pts = points.reshape(1, 1, m * z, 3)
    cam = pts @ ego_to_cam[..., :3, :3].transpose(-1, -2) + ego_to_cam[..., None, :3, 3]  # (B, N, M*Z, 3)
    pix = cam @ intrinsics.transpose(-1, -2)  # (B, N, M*Z, 3)
    depth = pix[..., 2:3]
    uv = pix[..., :2] / torch.clamp(depth, min=min_depth)
    scale = torch.tensor([float(image_size[0]), float(image_size[1])], dtype=uv.dtype, device=uv.device)
    uv = uv / scale
    in_front = depth[..., 0] > min_depth
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= 1)
    valid = (in_front & inside).to(uv.dtype)
    uv = torch.clamp(uv, -1.0, 2.0)
    b, n = uv.shape[:2]
    return uv.reshape(b, n, m, z, 2), valid.reshape(b, n, m, z)


def warp_bev(
    prev_bev: torch.Tensor,
    ego_motion: torch.Tensor,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
) -> torch.Tensor:
    """Align the previous frame's BEV map to the current ego frame.

    Args:
        prev_bev: ``(B, C, H, W)`` BEV of the previous frame (in the previous ego frame).
        ego_motion: ``(B, 4, 4)`` transform of points from the *previous* ego frame into the *current* one
            (``T_cur<-prev = inv(ego_to_global_cur) @ ego_to_global_prev``).

    Returns:
        ``(B, C, H, W)``: for every current cell, ``prev_bev`` sampled bilinearly where that cell was in the previous
        frame; zeros where it was outside the previous grid.
    """
    b, _, h, w = prev_bev.shape
    centres = bev_cell_centres((h, w), x_range, y_range).to(prev_bev)  # (HW, 2)
    homo = torch.cat([centres, torch.zeros_like(centres[:, :1]), torch.ones_like(centres[:, :1])], dim=-1)
    prev_from_cur = rigid_inverse(ego_motion)  # (B, 4, 4)
    prev_xy = (homo[None] @ prev_from_cur.transpose(-1, -2))[..., :2]  # (B, HW, 2)
    grid = metric_to_fraction(prev_xy, x_range, y_range) * 2.0 - 1.0
    return F.grid_sample(prev_bev, grid.reshape(b, h, w, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
