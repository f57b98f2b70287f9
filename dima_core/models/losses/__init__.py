"""Stage-1 losses of the vision planner (VAD's perception, motion and planning losses).

:class:`PlannerLoss` is the entry point; the functions below are its parts, usable (and tested) on their own.
"""

from dima_core.models.losses.detection import Matches, detection_loss, encode_boxes, match_agents, motion_loss
from dima_core.models.losses.focal import focal_cost, sigmoid_focal_loss
from dima_core.models.losses.map import map_loss, match_map, polyline_orderings
from dima_core.models.losses.matching import hungarian_match
from dima_core.models.losses.planner_loss import TARGET_KEYS, PlannerLoss
from dima_core.models.losses.planning import (
    best_mode_trajectories,
    boundary_loss,
    collision_loss,
    direction_loss,
    imitation_l1,
)

__all__ = [
    "Matches",
    "PlannerLoss",
    "TARGET_KEYS",
    "best_mode_trajectories",
    "boundary_loss",
    "collision_loss",
    "detection_loss",
    "direction_loss",
    "encode_boxes",
    "focal_cost",
    "hungarian_match",
    "imitation_l1",
    "map_loss",
    "match_agents",
    "match_map",
    "motion_loss",
    "polyline_orderings",
    "sigmoid_focal_loss",
]
