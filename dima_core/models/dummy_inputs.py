"""Synthetic model inputs and targets with the right shapes and a plausible nuScenes-like camera rig.

For shape checks, ONNX export, latency benchmarks and tests — not for training. The rig follows
``constants.CAMERA_NAMES`` (front, front-right, front-left, back, back-left, back-right) at yaws
0, -55, 55, 180, 110, -110 degrees, 1.5 m up, with a pinhole of horizontal field of view ``fov_deg`` scaled to the
network input size.
"""

from __future__ import annotations

import math

import torch

from dima_core.constants import FUTURE_STEPS
from dima_core.models.config import ModelConfig

CAMERA_YAWS_DEG: tuple[float, ...] = (0.0, -55.0, 55.0, 180.0, 110.0, -110.0)


def camera_rig(
    batch: int, image_size: tuple[int, int], num_cameras: int = 6, fov_deg: float = 70.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(intrinsics (B, N, 3, 3), cam_to_ego (B, N, 4, 4))`` of a surround rig (optical frames)."""
    w, h = image_size
    f = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    k = torch.tensor([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    poses = []
    for n in range(num_cameras):
        a = math.radians(CAMERA_YAWS_DEG[n % len(CAMERA_YAWS_DEG)])
        forward = [math.cos(a), math.sin(a), 0.0]
        right = [math.sin(a), -math.cos(a), 0.0]
        down = [0.0, 0.0, -1.0]
        t = torch.eye(4)
        t[:3, 0], t[:3, 1], t[:3, 2] = torch.tensor(right), torch.tensor(down), torch.tensor(forward)
        t[:3, 3] = torch.tensor([1.0 * math.cos(a) + 0.5, 0.5 * math.sin(a), 1.5])
        poses.append(t)
    intrinsics = k.expand(batch, num_cameras, 3, 3).clone()
    cam_to_ego = torch.stack(poses).expand(batch, num_cameras, 4, 4).clone()
    return intrinsics, cam_to_ego


def dummy_inputs(config: ModelConfig, batch: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """``VisionPlanner.forward`` keyword inputs: images in [0, 1], rig, ego status, command (+ temporal inputs)."""
    g = torch.Generator().manual_seed(seed)
    w, h = config.image_size
    intrinsics, cam_to_ego = camera_rig(batch, config.image_size, config.num_cameras)
    inputs = {
        "images": torch.rand(batch, config.num_cameras, 3, h, w, generator=g),
        "intrinsics": intrinsics,
        "cam_to_ego": cam_to_ego,
        "ego_status": torch.randn(batch, 4, generator=g),
        "command": torch.arange(batch, dtype=torch.long) % config.planner.num_commands,
    }
    if config.bev.use_temporal:
        hb, wb = config.bev.grid_size
        motion = torch.eye(4).expand(batch, 4, 4).clone()
        motion[:, 0, 3] = -2.0  # the previous frame's origin is 2 m behind
        inputs["prev_bev"] = torch.randn(batch, config.embed_dim, hb, wb, generator=g)
        inputs["ego_motion"] = motion
    return inputs


def dummy_targets(
    config: ModelConfig, batch: int = 1, num_agents: int = 3, num_map: int = 2, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Padded targets for :class:`~dima_core.models.losses.PlannerLoss` (one padding slot each)."""
    g = torch.Generator().manual_seed(seed)
    t = FUTURE_STEPS
    p = config.map_head.num_points
    ng, nv = num_agents + 1, num_map + 1
    xy = torch.rand(batch, ng, 2, generator=g) * torch.tensor([40.0, 20.0]) - torch.tensor([20.0, 10.0])
    boxes = torch.cat(
        [
            xy,
            torch.zeros(batch, ng, 1),
            torch.tensor([1.9, 4.5, 1.6]).expand(batch, ng, 3),
            torch.rand(batch, ng, 1, generator=g) * 6.0 - 3.0,
        ],
        dim=-1,
    )
    steps = torch.arange(1, t + 1, dtype=torch.float32).view(1, 1, t, 1)
    vel = torch.randn(batch, ng, 2, generator=g)
    futures = xy[:, :, None] + steps * 0.5 * vel[:, :, None]
    agent_mask = torch.zeros(batch, ng, dtype=torch.bool)
    agent_mask[:, :num_agents] = True
    start = torch.rand(batch, nv, 1, 2, generator=g) * 20.0 - 10.0
    along = torch.linspace(0, 1, p).view(1, 1, p, 1) * torch.tensor([20.0, 2.0])
    map_mask = torch.zeros(batch, nv, dtype=torch.bool)
    map_mask[:, :num_map] = True
    ego = torch.stack([torch.arange(1, t + 1) * 2.0, torch.zeros(t)], dim=-1).expand(batch, t, 2).clone()
    return {
        "gt_boxes": boxes,
        "gt_labels": torch.randint(0, config.agent_head.num_classes, (batch, ng), generator=g),
        "gt_velocities": vel,
        "gt_agent_futures": futures,
        "gt_agent_future_mask": torch.ones(batch, ng, t, dtype=torch.bool),
        "gt_agent_mask": agent_mask,
        "gt_map_polylines": start + along,
        "gt_map_labels": torch.randint(0, config.map_head.num_classes, (batch, nv), generator=g),
        "gt_map_mask": map_mask,
        "gt_ego_future": ego,
        "gt_ego_future_mask": torch.ones(batch, t, dtype=torch.bool),
        "command": torch.full((batch,), 2, dtype=torch.long),
    }
