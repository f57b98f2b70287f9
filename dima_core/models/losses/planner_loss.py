"""``PlannerLoss``: every stage-1 loss of the vision planner, weighted, as a dict of named scalars plus ``total``.

Targets are padded tensors with masks (a mapping, e.g. the training collate's batch dict):

===================== =============== ==============================================================
key                   shape           meaning
===================== =============== ==============================================================
gt_boxes              (B, Ng, 7)      x, y, z, w, l, h, yaw, ego frame
gt_labels             (B, Ng) int64   index into constants.DETECTION_CLASSES
gt_velocities         (B, Ng, 2)      vx, vy (NaN = unknown, ignored)
gt_agent_futures      (B, Ng, T, 2)   future centre positions, current ego frame
gt_agent_future_mask  (B, Ng, T)      valid future steps
gt_agent_mask         (B, Ng)         real (non-padding) agents
gt_map_polylines      (B, Nm, P, 2)   polylines, ego frame (P = the map head's num_points)
gt_map_labels         (B, Nm) int64   index into constants.MAP_CLASSES
gt_map_mask           (B, Nm)         real (non-padding) vectors
gt_ego_future         (B, T, 2)       GT ego positions
gt_ego_future_mask    (B, T)          valid GT ego steps
command               (B,) int64      0 right, 1 left, 2 straight
===================== =============== ==============================================================

Returned keys (already multiplied by their :class:`~dima_core.models.config.LossConfig` weights): ``det_cls``,
``det_box``, ``motion_reg``, ``motion_cls``, ``map_cls``, ``map_pts``, ``map_dir``, ``plan_reg``, ``plan_col``,
``plan_bound``, ``plan_dir`` and ``total`` (their sum). All are finite with zero GT agents or map vectors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from dima_core.constants import PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE
from dima_core.models.config import LossConfig
from dima_core.models.losses.detection import detection_loss, match_agents, motion_loss
from dima_core.models.losses.map import map_loss, match_map
from dima_core.models.losses.planning import boundary_loss, collision_loss, direction_loss, imitation_l1
from dima_core.models.planner import select_by_command
from dima_core.models.vision_planner import PlannerOutput

TARGET_KEYS: tuple[str, ...] = (
    "gt_boxes",
    "gt_labels",
    "gt_velocities",
    "gt_agent_futures",
    "gt_agent_future_mask",
    "gt_agent_mask",
    "gt_map_polylines",
    "gt_map_labels",
    "gt_map_mask",
    "gt_ego_future",
    "gt_ego_future_mask",
    "command",
)

VEHICLE_CLASSES = 5  # car, truck, bus, trailer, construction_vehicle: the first five DETECTION_CLASSES


class PlannerLoss(nn.Module):
    """``forward(output: PlannerOutput, targets: Mapping[str, Tensor]) -> dict[str, Tensor]``."""

    def __init__(
        self,
        config: LossConfig | None = None,
        x_range: tuple[float, float] = PERCEPTION_X_RANGE,
        y_range: tuple[float, float] = PERCEPTION_Y_RANGE,
    ):
        super().__init__()
        self.config = config or LossConfig()
        self.x_range, self.y_range = x_range, y_range

    def forward(self, output: PlannerOutput, targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = [k for k in TARGET_KEYS if k not in targets]
        if missing:
            raise KeyError(f"PlannerLoss: missing targets {missing}")
        cfg = self.config
        beam = output.beam
        t = targets
        gt_boxes = torch.nan_to_num(t["gt_boxes"].to(beam.agent_boxes.dtype))
        agent_mask = t["gt_agent_mask"].bool()
        map_mask = t["gt_map_mask"].bool()

        matches = match_agents(
            beam.agent_logits,
            beam.agent_boxes,
            gt_boxes,
            t["gt_labels"],
            agent_mask,
            cfg.det_match_cls,
            cfg.det_match_box,
            cfg.focal_alpha,
            cfg.focal_gamma,
        )
        det_cls, det_box = detection_loss(
            beam.agent_logits,
            beam.agent_boxes,
            beam.agent_velocities,
            gt_boxes,
            t["gt_labels"],
            t["gt_velocities"].to(gt_boxes.dtype),
            matches,
            cfg.focal_alpha,
            cfg.focal_gamma,
        )
        motion_reg, motion_cls = motion_loss(
            beam.agent_trajectories,
            beam.agent_mode_logits,
            beam.agent_boxes,
            gt_boxes,
            t["gt_agent_futures"].to(gt_boxes.dtype),
            t["gt_agent_future_mask"].bool(),
            matches,
        )

        gt_polylines = torch.nan_to_num(t["gt_map_polylines"].to(beam.map_polylines.dtype))
        map_matches, map_targets = match_map(
            beam.map_logits,
            beam.map_polylines,
            gt_polylines,
            t["gt_map_labels"],
            map_mask,
            self.x_range,
            self.y_range,
            tuple(cfg.closed_map_classes),
            cfg.map_match_cls,
            cfg.map_match_pts,
            cfg.focal_alpha,
            cfg.focal_gamma,
        )
        map_cls, map_pts, map_dir = map_loss(
            beam.map_logits,
            beam.map_polylines,
            t["gt_map_labels"],
            map_matches,
            map_targets,
            self.x_range,
            self.y_range,
            cfg.focal_alpha,
            cfg.focal_gamma,
        )

        plan = select_by_command(output.trajectories, t["command"])
        plan_mask = t["gt_ego_future_mask"].bool()
        plan_reg = imitation_l1(plan, t["gt_ego_future"].to(plan.dtype), plan_mask)

        def perceived(x: torch.Tensor) -> torch.Tensor:
            return x.detach() if cfg.detach_perception_in_plan else x

        plan_col = collision_loss(
            plan,
            plan_mask,
            perceived(beam.agent_trajectories),
            perceived(beam.agent_mode_logits),
            perceived(beam.agent_logits),
            cfg.col_agent_score_thresh,
            cfg.col_lateral_thresh,
            cfg.col_longitudinal_thresh,
            cfg.col_radius,
            VEHICLE_CLASSES if cfg.col_vehicle_classes_only else None,
        )
        plan_bound = boundary_loss(
            plan,
            plan_mask,
            perceived(beam.map_polylines),
            perceived(beam.map_logits),
            cfg.bound_class,
            cfg.bound_score_thresh,
            cfg.bound_dis_thresh,
        )
        plan_dir = direction_loss(
            plan,
            plan_mask,
            perceived(beam.map_polylines),
            perceived(beam.map_logits),
            cfg.dir_class,
            cfg.dir_score_thresh,
            cfg.dir_dis_thresh,
            cfg.dir_static_thresh,
        )

        losses = {
            "det_cls": cfg.det_cls * det_cls,
            "det_box": cfg.det_box * det_box,
            "motion_reg": cfg.motion_reg * motion_reg,
            "motion_cls": cfg.motion_cls * motion_cls,
            "map_cls": cfg.map_cls * map_cls,
            "map_pts": cfg.map_pts * map_pts,
            "map_dir": cfg.map_dir * map_dir,
            "plan_reg": cfg.plan_reg * plan_reg,
            "plan_col": cfg.plan_col * plan_col,
            "plan_bound": cfg.plan_bound * plan_bound,
            "plan_dir": cfg.plan_dir * plan_dir,
        }
        losses["total"] = torch.stack(list(losses.values())).sum()
        return losses
