"""Ground-truth BEV occupancy for the open-loop collision metric (docs/design.md, Evaluation protocol), as VAD's
``metric_stp3.py``.

Grid
----
``(T, 200, 200)`` bool, 0.5 m cells over [-50, 50] m around the *current* ego pose, one slice per future step
t = 1..T (0.5 s .. 3.0 s). Orientation is VAD's image convention translated to our ego frame (x forward, y left):

- row ``r`` grows *backwards*: a point at forward offset ``x`` lies at row ``(50 - x) / 0.5``;
- column ``c`` grows to the *right*: a point at lateral offset ``y`` lies at column ``(50 - y) / 0.5``;

so the ego origin sits at cell (100, 100) and the image reads "forward is up, left is left".

Agents
------
The occupancy at step t is the union of the GT agent boxes (length along their heading, width across) placed at
their GT future centre and yaw at t, wherever the agent's future mask is valid at t. Which agents, as VAD's test
pipeline feeds them to ``PlanningMetric.get_label``:

- classes: VAD keeps nuScenes categories ``human.pedestrian.*`` (its index list 2..8) and ``vehicle.*`` (14..23)
  after its detection-class name filter. In DETECTION_CLASSES terms that is every class except ``traffic_cone``
  and ``barrier``: the vehicles ``car, truck, bus, trailer, construction_vehicle, motorcycle, bicycle`` and
  ``pedestrian`` (``vehicle.bicycle`` is a vehicle category in nuScenes; emergency vehicles, strollers,
  wheelchairs and personal-mobility riders have no detection class, so neither VAD nor the data layer keep them);
- at least one lidar point (mmdet3d's ``num_lidar_pts > 0`` annotation mask, used when ``use_valid_flag`` is off,
  as in VAD's val/test config);
- current centre strictly inside the perception range (VAD's ``CustomObjectRangeFilter``: x in (-30, 30),
  y in (-15, 15) in our ego frame; VAD states it in its lidar frame, whose origin is the lidar mount rather than the
  ego-pose origin we use, per docs/design.md, Frames and shapes).

Every filter is a field of :class:`OccupancyConfig`, so an evaluation can widen them (e.g. all agents out to 50 m);
the report's formula states the values used.

Rasteriser
----------
``cv2.fillPoly``, the rasteriser VAD's ``get_birds_eye_view_label`` uses: each box corner is mapped to continuous
(column, row) indices as above and rounded with ``np.round`` (half to even, like VAD), and fillPoly then sets every
cell whose integer index lies inside *or on* the rounded polygon. A cell index therefore stands for the point at its
index (cell ``i`` <-> offset ``50 - 0.5 i``); reusing the same library and rounding reproduces VAD's grids cell for
cell, which a different rasteriser (skimage's strict point-in-polygon, matplotlib's Path) would not at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dima_core.constants import DETECTION_CLASSES, FUTURE_STEPS, PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE
from dima_core.data.geometry import box_corners_2d
from dima_core.data.sample import AgentAnnotations

GRID_SIZE = 200  # cells per side
GRID_RESOLUTION_M = 0.5
GRID_HALF_EXTENT_M = 50.0  # the grid covers [-50, 50] m in x and y

# VAD's occupancy classes expressed in DETECTION_CLASSES names (see the module docstring).
OCCUPANCY_VEHICLE_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "motorcycle",
    "bicycle",
)
OCCUPANCY_HUMAN_CLASSES: tuple[str, ...] = ("pedestrian",)
OCCUPANCY_CLASSES: tuple[str, ...] = OCCUPANCY_VEHICLE_CLASSES + OCCUPANCY_HUMAN_CLASSES


@dataclass(frozen=True)
class OccupancyConfig:
    """Which GT agents enter the occupancy. Defaults reproduce VAD's evaluation.

    Attributes:
        classes: DETECTION_CLASSES names that occupy space.
        x_range: open interval on the agent's *current* centre x (forward), metres; None keeps every agent.
        y_range: open interval on the current centre y (left), metres; None keeps every agent.
        min_lidar_points: agents with fewer lidar points are dropped (VAD: 1). 0 keeps every agent.
    """

    classes: tuple[str, ...] = OCCUPANCY_CLASSES
    x_range: tuple[float, float] | None = PERCEPTION_X_RANGE
    y_range: tuple[float, float] | None = PERCEPTION_Y_RANGE
    min_lidar_points: int = 1

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in DETECTION_CLASSES]
        if unknown:
            raise ValueError(f"occupancy classes {unknown} are not in DETECTION_CLASSES {DETECTION_CLASSES}")
        for name, rng in (("x_range", self.x_range), ("y_range", self.y_range)):
            if rng is not None and not rng[0] < rng[1]:
                raise ValueError(f"occupancy {name} {rng} must be (low, high) with low < high")
        if self.min_lidar_points < 0:
            raise ValueError(f"occupancy min_lidar_points must be >= 0, got {self.min_lidar_points}")

    def describe(self) -> str:
        """One line for the report's formula string."""
        parts = [f"GT agents of classes {{{', '.join(self.classes)}}}"]
        if self.min_lidar_points > 0:
            parts.append(f"with >= {self.min_lidar_points} lidar point(s)")
        if self.x_range is not None or self.y_range is not None:
            xr = "any x" if self.x_range is None else f"x in ({self.x_range[0]:g}, {self.x_range[1]:g})"
            yr = "any y" if self.y_range is None else f"y in ({self.y_range[0]:g}, {self.y_range[1]:g})"
            parts.append(f"current centre {xr}, {yr} m")
        return ", ".join(parts)


def world_to_grid(xy: np.ndarray) -> np.ndarray:
    """Continuous grid indices of ego-frame points.

    Args:
        xy: (..., 2) x forward, y left in the current ego frame, metres.

    Returns:
        (..., 2) float64 ``(row, col)`` = ``((50 - x) / 0.5, (50 - y) / 0.5)``; integer values are cell indices.
    """
    xy = np.asarray(xy, np.float64)
    row = (GRID_HALF_EXTENT_M - xy[..., 0]) / GRID_RESOLUTION_M
    col = (GRID_HALF_EXTENT_M - xy[..., 1]) / GRID_RESOLUTION_M
    return np.stack([row, col], axis=-1)


def rasterize_box(grid: np.ndarray, corners_xy: np.ndarray) -> None:
    """Set the cells of one polygon in a (200, 200) uint8 grid, in place (VAD's rounding + cv2.fillPoly).

    Args:
        grid: (GRID_SIZE, GRID_SIZE) uint8, C-contiguous.
        corners_xy: (K, 2) polygon corners in the ego frame.
    """
    rc = np.round(world_to_grid(corners_xy))  # np.round: half to even, as VAD
    # cv2 points are (x = column, y = row); corners far outside the grid are clipped by fillPoly itself.
    pts = np.stack([rc[:, 1], rc[:, 0]], axis=-1).astype(np.int32)
    cv2.fillPoly(grid, [pts], 1)


def select_agents(agents: AgentAnnotations, config: OccupancyConfig = OccupancyConfig()) -> np.ndarray:
    """(N,) bool: the agents that enter the occupancy under ``config`` (class, lidar points, current range)."""
    n = len(agents)
    if n == 0:
        return np.zeros((0,), bool)
    class_ids = np.array([DETECTION_CLASSES.index(c) for c in config.classes], np.int64)
    keep = np.isin(np.asarray(agents.labels, np.int64), class_ids)
    if config.min_lidar_points > 0:
        keep &= np.asarray(agents.num_lidar_points, np.int64) >= config.min_lidar_points
    boxes = np.asarray(agents.boxes, np.float64)
    if config.x_range is not None:
        keep &= (boxes[:, 0] > config.x_range[0]) & (boxes[:, 0] < config.x_range[1])
    if config.y_range is not None:
        keep &= (boxes[:, 1] > config.y_range[0]) & (boxes[:, 1] < config.y_range[1])
    return keep


def build_occupancy(agents: AgentAnnotations, config: OccupancyConfig = OccupancyConfig()) -> np.ndarray:
    """GT occupancy of one sample.

    Args:
        agents: GT agents of the sample; uses ``boxes`` (N, 7) for size and the current-centre filter,
            ``future`` (N, T, 2), ``future_yaw`` (N, T) and ``future_mask`` (N, T), all in the current ego frame.
        config: which agents count.

    Returns:
        (T, GRID_SIZE, GRID_SIZE) bool, T = ``agents.future.shape[1]`` (FUTURE_STEPS for real samples); indexing
        as :func:`world_to_grid`.
    """
    steps = agents.future.shape[1] if agents.future.ndim == 3 else FUTURE_STEPS
    grids = np.zeros((steps, GRID_SIZE, GRID_SIZE), np.uint8)
    keep = select_agents(agents, config)
    for i in np.flatnonzero(keep):
        width, length = float(agents.boxes[i, 3]), float(agents.boxes[i, 4])
        for t in np.flatnonzero(np.asarray(agents.future_mask[i], bool)):
            x, y = (float(v) for v in agents.future[i, t])
            corners = box_corners_2d(x, y, float(agents.future_yaw[i, t]), length, width)
            rasterize_box(grids[t], corners)
    return grids.astype(bool)


__all__ = [
    "GRID_HALF_EXTENT_M",
    "GRID_RESOLUTION_M",
    "GRID_SIZE",
    "OCCUPANCY_CLASSES",
    "OCCUPANCY_HUMAN_CLASSES",
    "OCCUPANCY_VEHICLE_CLASSES",
    "OccupancyConfig",
    "build_occupancy",
    "rasterize_box",
    "select_agents",
    "world_to_grid",
]
