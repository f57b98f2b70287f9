"""Surrogate (e) ground truth: add a vehicle in the ego's lane or remove a vehicle, and edit the labels to match.

These are rules on numpy ground truth; the neural side (the added agent's token, masking a removed agent's tokens,
batching the edited labels) is :mod:`dima_core.models.mllm.scene_editing`. Settings:
:class:`~dima_core.models.mllm.config.SceneEditConfig` (``MllmConfig.scene_edit``).

Adding (on the ground truth, in the current ego frame, x forward, y left):
1. Lane: at a candidate distance ``d`` ahead, intersect the GT map's divider and boundary polylines with the line
   ``x = d``; the ego's lane is the gap around the ego path's lateral position there, bounded on both sides and
   ``lane_width_range_m`` wide. The car is centred in it, heading along the bounding lines.
2. Trajectory: stopped, or driving along that heading at a configured speed (seeded choice).
3. No collision: its box (grown by ``clearance_m``) must not overlap any existing agent's box at t = 0 or at any
   valid future step, nor the ego's footprint now. The first distance (in a seeded order) that passes wins.
4. Ego label (rules on the GT ego future, progress measured along the GT path): the ego's front must stay
   ``follow_gap_m`` behind the car's rear. If the GT plan already does, the plan is kept (``keep``). A moving car
   makes the ego follow it (``slow_down``). A stopped car makes it ``stop`` behind it, unless overtaking is allowed,
   the ego is fast enough, and a free lane exists to the left across a *divider* (never across a road boundary):
   then the ego shifts into that lane before reaching the car (``overtake``), provided the shifted trajectory
   collides with nothing; else it stops.

Removing: one vehicle of ``removable_classes`` that is not in the ego's path (more than a lane half-width from the
GT path and its extension), so the GT ego plan stays correct without it (``keep``); it is deleted from the GT.

Each edit carries matching QA pairs. Everything is deterministic given the seed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

import numpy as np

from dima_core.constants import (
    DETECTION_CLASSES,
    EGO_FOOTPRINT_FORWARD_OFFSET_M,
    EGO_LENGTH_M,
    FUTURE_STEPS,
    MAP_CLASSES,
    STEP_SECONDS,
)
from dima_core.data.geometry import box_corners_2d, boxes_overlap
from dima_core.data.qa.actions import ego_footprint
from dima_core.data.qa.describe import noun
from dima_core.data.sample import DrivingSample

if TYPE_CHECKING:  # annotations only: importing the models package here would make data -> models a cycle
    from dima_core.models.mllm.config import SceneEditConfig

EgoRule = Literal["keep", "stop", "slow_down", "overtake"]
_LANE_LINE_CLASSES = (MAP_CLASSES.index("divider"), MAP_CLASSES.index("boundary"))
_DIVIDER = MAP_CLASSES.index("divider")
_EGO_FRONT_M = EGO_FOOTPRINT_FORWARD_OFFSET_M + EGO_LENGTH_M / 2  # ego origin -> front bumper


@dataclass
class EditableScene:
    """The ground truth an edit reads and rewrites (one sample, current ego frame).

    agent_boxes (N, 7) x, y, z, w, l, h, yaw; agent_labels (N,) index into DETECTION_CLASSES;
    agent_futures (N, T, 2) positions; agent_future_mask (N, T) bool; agent_future_yaw (N, T) or None (box yaw
    is used then); map_polylines (M, P, 2); map_labels (M,) index into MAP_CLASSES; ego_future (T, 2) positions;
    ego_future_mask (T,) bool; ego_speed m/s.
    """

    agent_boxes: np.ndarray
    agent_labels: np.ndarray
    agent_futures: np.ndarray
    agent_future_mask: np.ndarray
    map_polylines: np.ndarray
    map_labels: np.ndarray
    ego_future: np.ndarray
    ego_future_mask: np.ndarray
    ego_speed: float
    agent_future_yaw: np.ndarray | None = None

    @property
    def num_agents(self) -> int:
        return int(self.agent_boxes.shape[0])

    @classmethod
    def from_sample(cls, sample: DrivingSample) -> EditableScene:
        a = sample.agents
        return cls(
            agent_boxes=np.asarray(a.boxes, np.float64),
            agent_labels=np.asarray(a.labels, np.int64),
            agent_futures=np.asarray(a.future, np.float64),
            agent_future_mask=np.asarray(a.future_mask, bool),
            map_polylines=np.asarray(sample.vector_map.polylines, np.float64),
            map_labels=np.asarray(sample.vector_map.labels, np.int64),
            ego_future=np.asarray(sample.ego_future, np.float64),
            ego_future_mask=np.asarray(sample.ego_future_mask, bool),
            ego_speed=float(sample.ego_status.speed),
            agent_future_yaw=None if a.future_yaw is None else np.asarray(a.future_yaw, np.float64),
        )

    def agent_yaw(self, i: int, t: int) -> float:
        if self.agent_future_yaw is not None:
            return float(self.agent_future_yaw[i, t])
        return float(self.agent_boxes[i, 6])


@dataclass
class SceneEdit:
    """One edit of one sample.

    scene: the edited ground truth (agent appended or deleted; ``ego_future`` = the edited ego label).
    rule: what the edited ego label does. agent_box (7,), agent_future (T, 2), agent_label: the added or removed
    agent. removed_index: its index in the original scene (removals), else None. qa: (question, answer) pairs.
    """

    kind: Literal["add", "remove"]
    scene: EditableScene
    rule: EgoRule
    agent_box: np.ndarray
    agent_future: np.ndarray
    agent_label: int
    removed_index: int | None
    qa: list[tuple[str, str]]


@dataclass
class Lane:
    """A lane cut at ``x``: its bounding lines' lateral positions, classes, centre and heading."""

    x: float
    right_y: float
    left_y: float
    right_label: int
    left_label: int
    heading: float

    @property
    def centre(self) -> float:
        return 0.5 * (self.left_y + self.right_y)

    @property
    def width(self) -> float:
        return self.left_y - self.right_y


def line_crossings(polylines: np.ndarray, labels: np.ndarray, x: float) -> list[tuple[float, int, float]]:
    """Where divider/boundary polylines cross the line ``x``: (y, class, heading folded forward) per crossing."""
    out = []
    for line, label in zip(polylines, labels, strict=True):
        if int(label) not in _LANE_LINE_CLASSES:
            continue
        for (x0, y0), (x1, y1) in pairwise(line):
            if x0 == x1 or (x0 - x) * (x1 - x) > 0:
                continue
            y = y0 + (x - x0) * (y1 - y0) / (x1 - x0)
            dx, dy = (x1 - x0, y1 - y0) if x1 > x0 else (x0 - x1, y0 - y1)
            out.append((float(y), int(label), math.atan2(dy, dx)))
    return out


def lane_at(
    polylines: np.ndarray, labels: np.ndarray, x: float, y_ref: float, width_range: tuple[float, float]
) -> Lane | None:
    """The lane containing lateral position ``y_ref`` at ``x``: the nearest line crossing on each side, if the gap
    between them is a plausible lane width; None otherwise."""
    crossings = line_crossings(polylines, labels, x)
    left = [c for c in crossings if c[0] > y_ref]
    right = [c for c in crossings if c[0] <= y_ref]
    if not left or not right:
        return None
    ly = min(left, key=lambda c: c[0])
    ry = max(right, key=lambda c: c[0])
    width = ly[0] - ry[0]
    if not (width_range[0] <= width <= width_range[1]):
        return None
    heading = math.atan2(math.sin(ly[2]) + math.sin(ry[2]), math.cos(ly[2]) + math.cos(ry[2]))
    return Lane(x, ry[0], ly[0], ry[1], ly[1], heading)


def ego_path(scene: EditableScene) -> tuple[np.ndarray, np.ndarray]:
    """GT ego path from the origin through the valid future points: points (K, 2) and arc lengths (K,)."""
    pts = np.vstack([np.zeros((1, 2)), scene.ego_future[scene.ego_future_mask]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    return pts, np.concatenate([[0.0], np.cumsum(seg)])


def gt_progress(scene: EditableScene) -> np.ndarray:
    """(T,) arc length of each GT ego waypoint along the GT path; invalid steps hold the last valid progress
    (monotone), so an edited label stays defined where the GT is not."""
    _, arc = ego_path(scene)
    s = np.zeros(FUTURE_STEPS)
    s[scene.ego_future_mask] = arc[1:]
    return np.maximum.accumulate(s)


def path_progress(scene: EditableScene, xy: np.ndarray) -> np.ndarray:
    """(K,) arc lengths of the closest points to ``xy`` (K, 2) on the GT ego path, extended 200 m straight on along
    its last direction (+x for a standing ego) so that points past its end get a progress too."""
    pts, arc = ego_path(scene)
    last = pts[-1] - pts[-2] if len(pts) > 1 else np.zeros(2)
    direction = last / np.linalg.norm(last) if np.linalg.norm(last) > 1e-3 else np.array([1.0, 0.0])
    pts = np.vstack([pts, pts[-1] + 200.0 * direction])
    arc = np.concatenate([arc, [arc[-1] + 200.0]])
    a, ab = pts[:-1], np.diff(pts, axis=0)
    seg_len2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
    out = []
    for p in np.atleast_2d(xy):
        t = np.clip(np.einsum("ij,ij->i", p - a, ab) / seg_len2, 0.0, 1.0)
        dist = np.linalg.norm(a + t[:, None] * ab - p, axis=1)
        k = int(np.argmin(dist))
        out.append(arc[k] + t[k] * math.sqrt(seg_len2[k]))
    return np.asarray(out)


def point_at(points: np.ndarray, arc: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Positions (K', 2) at arc lengths ``s`` along a polyline (clamped to its ends)."""
    if arc[-1] <= 0.0:
        return np.repeat(points[:1], len(s), axis=0)
    return np.stack([np.interp(s, arc, points[:, 0]), np.interp(s, arc, points[:, 1])], axis=1)


def lateral_ref(scene: EditableScene, x: float) -> float:
    """The ego path's lateral position at ``x`` (0 when the path does not advance in x)."""
    pts, _ = ego_path(scene)
    xs = pts[:, 0]
    if len(xs) < 2 or np.any(np.diff(xs) <= 0.0):
        return 0.0
    return float(np.interp(x, xs, pts[:, 1]))


def agent_corners(box: np.ndarray, xy: np.ndarray, yaw: float, grow: float = 0.0) -> np.ndarray:
    """(4, 2) corners of an agent box moved to ``xy``, length/width grown by ``grow`` on each side."""
    return box_corners_2d(float(xy[0]), float(xy[1]), yaw, float(box[4]) + 2 * grow, float(box[3]) + 2 * grow)


def added_collides(scene: EditableScene, box: np.ndarray, future: np.ndarray, clearance: float) -> bool:
    """Whether an added agent (box at t=0, future (T, 2), fixed heading box[6]) overlaps the ego now or any
    existing agent now or at a valid future step."""
    yaw = float(box[6])
    if boxes_overlap(agent_corners(box, box[:2], yaw, clearance), ego_footprint(0.0, 0.0, 0.0)):
        return True
    for i in range(scene.num_agents):
        other = scene.agent_boxes[i]
        if boxes_overlap(agent_corners(box, box[:2], yaw, clearance), agent_corners(other, other[:2], float(other[6]))):
            return True
        for t in range(future.shape[0]):
            if not scene.agent_future_mask[i, t]:
                continue
            mine = agent_corners(box, future[t], yaw, clearance)
            if boxes_overlap(mine, agent_corners(other, scene.agent_futures[i, t], scene.agent_yaw(i, t))):
                return True
    return False


def ego_collides(ego_future: np.ndarray, boxes: np.ndarray, futures: np.ndarray, masks: np.ndarray) -> bool:
    """Whether the ego footprint (heading kept at 0, as the planning metric does) overlaps any agent at any step."""
    for t in range(ego_future.shape[0]):
        ego = ego_footprint(float(ego_future[t, 0]), float(ego_future[t, 1]), 0.0)
        for box, fut, m in zip(boxes, futures, masks, strict=True):
            if m[t] and boxes_overlap(ego, agent_corners(box, fut[t], float(box[6]))):
                return True
    return False


def _follow(scene: EditableScene, agent_s: np.ndarray, agent_length: float, gap: float) -> tuple[np.ndarray, bool]:
    """Ego positions (T, 2) that keep the ego front ``gap`` behind the agent's rear, at arc lengths ``agent_s``
    (T,) of the agent centre along the GT path; and whether that changed the GT plan."""
    pts, arc = ego_path(scene)
    s_gt = gt_progress(scene)
    s_max = agent_s - agent_length / 2 - gap - _EGO_FRONT_M
    s = np.clip(np.minimum(s_gt, s_max), 0.0, None)
    s = np.maximum.accumulate(s)
    changed = bool(np.any(s < s_gt - 1e-6))
    return point_at(pts, arc, s), changed


def _free_left_lane(scene: EditableScene, lane: Lane, cfg: SceneEditConfig) -> Lane | None:
    """The lane left of ``lane`` across a divider, when no agent is in it between the ego and past the car."""
    if lane.left_label != _DIVIDER:
        return None
    left = lane_at(scene.map_polylines, scene.map_labels, lane.x, lane.left_y + 0.05, cfg.lane_width_range_m)
    if left is None:
        return None
    x_hi = lane.x + 2 * EGO_LENGTH_M + 10.0
    for i in range(scene.num_agents):
        pts = [scene.agent_boxes[i, :2]] + [
            scene.agent_futures[i, t] for t in range(FUTURE_STEPS) if scene.agent_future_mask[i, t]
        ]
        for x, y in pts:
            half = float(scene.agent_boxes[i, 3]) / 2
            if -EGO_LENGTH_M <= x <= x_hi and y + half > left.right_y and y - half < left.left_y:
                return None
    return left


def _overtake(
    scene: EditableScene, lane: Lane, left: Lane, box: np.ndarray, future: np.ndarray, cfg: SceneEditConfig
) -> np.ndarray | None:
    """GT progress kept, lateral shift (smoothstep) into the left lane completed before the car's rear; None when
    there is no room for it or the result collides with anything."""
    if scene.ego_speed < cfg.overtake_min_speed_mps:
        return None
    pts, arc = ego_path(scene)
    s_gt = gt_progress(scene)
    ramp_end = path_progress(scene, box[None, :2])[0] - float(box[4]) / 2 - cfg.follow_gap_m - _EGO_FRONT_M
    if ramp_end < 2 * EGO_LENGTH_M:
        return None
    u = np.clip(s_gt / ramp_end, 0.0, 1.0)
    shift = (left.centre - lane.centre) * u * u * (3 - 2 * u)
    edited = point_at(pts, arc, s_gt)
    edited[:, 1] += shift
    boxes = np.vstack([scene.agent_boxes, box[None]])
    futures = np.concatenate([scene.agent_futures, future[None]], axis=0)
    masks = np.concatenate([scene.agent_future_mask, np.ones((1, FUTURE_STEPS), bool)], axis=0)
    if ego_collides(edited, boxes, futures, masks):
        return None
    return edited


def _add_qa(rule: EgoRule, distance: float, speed: float, collides_before: bool) -> list[tuple[str, str]]:
    state = "stopped" if speed == 0.0 else "slow-moving"
    q1 = f"What should the ego vehicle do if a {state} car appears {distance:.0f} m ahead in its lane?"
    answers = {
        "keep": "The car is far enough ahead not to affect the planned path, so the ego vehicle keeps its plan.",
        "stop": "The car blocks the ego lane and there is no free lane to pass, so the ego vehicle should slow down "
        "and stop behind it.",
        "slow_down": "The car drives slower in the same lane, so the ego vehicle should slow down and follow it at a "
        "safe distance.",
        "overtake": "The car is stopped in the ego lane and the left lane is free, so the ego vehicle should change "
        "to the left lane and overtake it.",
    }
    q2 = f"Would the ego vehicle hit a {state} car {distance:.0f} m ahead in its lane if it kept its original plan?"
    a2 = "Yes, its original plan runs into the car." if collides_before else "No, its original plan stays clear of it."
    return [(q1, answers[rule]), (q2, a2)]


def add_agent(scene: EditableScene, cfg: SceneEditConfig, rng: np.random.Generator) -> SceneEdit | None:
    """Add a car in the ego lane ahead (see the module docstring); None when no distance admits one."""
    distances = [cfg.add_distances_m[i] for i in rng.permutation(len(cfg.add_distances_m))]
    speed = float(cfg.added_speed_choices_mps[int(rng.integers(len(cfg.added_speed_choices_mps)))])
    w, l, h = cfg.added_size_wlh
    for d in distances:
        lane = lane_at(scene.map_polylines, scene.map_labels, d, lateral_ref(scene, d), cfg.lane_width_range_m)
        if lane is None:
            continue
        box = np.array([d, lane.centre, 0.0, w, l, h, lane.heading])
        steps = (np.arange(1, FUTURE_STEPS + 1) * STEP_SECONDS * speed)[:, None]
        future = box[None, :2] + steps * np.array([[math.cos(lane.heading), math.sin(lane.heading)]])
        if added_collides(scene, box, future, cfg.clearance_m):
            continue
        agent_s = path_progress(scene, future)  # the car's centre progress along the (extended) GT path
        followed, changed = _follow(scene, agent_s, l, cfg.follow_gap_m)
        rule: EgoRule = "keep"
        edited = scene.ego_future.copy()
        if changed:
            left = _free_left_lane(scene, lane, cfg) if (cfg.allow_overtake and speed == 0.0) else None
            overtaken = _overtake(scene, lane, left, box, future, cfg) if left is not None else None
            if overtaken is not None:
                rule, edited = "overtake", overtaken
            else:
                rule, edited = ("stop" if speed == 0.0 else "slow_down"), followed
        new_scene = dataclasses.replace(
            scene,
            agent_boxes=np.vstack([scene.agent_boxes, box[None]]),
            agent_labels=np.concatenate([scene.agent_labels, [DETECTION_CLASSES.index("car")]]),
            agent_futures=np.concatenate([scene.agent_futures, future[None]], axis=0),
            agent_future_mask=np.concatenate([scene.agent_future_mask, np.ones((1, FUTURE_STEPS), bool)], axis=0),
            agent_future_yaw=None
            if scene.agent_future_yaw is None
            else np.concatenate([scene.agent_future_yaw, np.full((1, FUTURE_STEPS), lane.heading)], axis=0),
            ego_future=edited,
            # The edited label is defined at every step (held progress where the GT had none).
            ego_future_mask=np.ones(FUTURE_STEPS, bool) if rule != "keep" else scene.ego_future_mask.copy(),
        )
        return SceneEdit(
            "add", new_scene, rule, box, future, DETECTION_CLASSES.index("car"), None, _add_qa(rule, d, speed, changed)
        )
    return None


def _in_ego_path(scene: EditableScene, i: int, half_width: float) -> bool:
    """Whether agent i (now or at a valid future step) comes within ``half_width`` + its half width of the GT ego
    path, extended straight ahead along its last direction by 20 m."""
    pts, _ = ego_path(scene)
    direction = pts[-1] - pts[-2] if len(pts) > 1 and np.linalg.norm(pts[-1] - pts[-2]) > 1e-3 else np.array([1, 0.0])
    direction = direction / np.linalg.norm(direction)
    path = np.vstack([pts, pts[-1] + 20.0 * direction])
    samples = [scene.agent_boxes[i, :2]] + [
        scene.agent_futures[i, t] for t in range(FUTURE_STEPS) if scene.agent_future_mask[i, t]
    ]
    reach = half_width + float(scene.agent_boxes[i, 3]) / 2
    for p in samples:
        a, b = path[:-1], path[1:]
        ab = b - a
        t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-9), 0, 1)
        if float(np.min(np.linalg.norm(a + t[:, None] * ab - p, axis=1))) < reach:
            return True
    return False


def remove_agent(scene: EditableScene, cfg: SceneEditConfig, rng: np.random.Generator) -> SceneEdit | None:
    """Delete one removable vehicle that is not in the ego's path; None when there is none."""
    allowed = {DETECTION_CLASSES.index(c) for c in cfg.removable_classes}
    half_lane = cfg.lane_width_range_m[1] / 2
    candidates = [
        i
        for i in range(scene.num_agents)
        if int(scene.agent_labels[i]) in allowed and not _in_ego_path(scene, i, half_lane)
    ]
    if not candidates:
        return None
    i = int(candidates[int(rng.integers(len(candidates)))])
    keep = np.arange(scene.num_agents) != i
    new_scene = dataclasses.replace(
        scene,
        agent_boxes=scene.agent_boxes[keep],
        agent_labels=scene.agent_labels[keep],
        agent_futures=scene.agent_futures[keep],
        agent_future_mask=scene.agent_future_mask[keep],
        agent_future_yaw=None if scene.agent_future_yaw is None else scene.agent_future_yaw[keep],
        ego_future=scene.ego_future.copy(),
        ego_future_mask=scene.ego_future_mask.copy(),
    )
    word = noun(DETECTION_CLASSES[int(scene.agent_labels[i])])
    x, y = scene.agent_boxes[i, :2]
    qa = [
        (
            f"What should the ego vehicle do if the {word} at ({x:.1f}, {y:.1f}) were not there?",
            f"The {word} is not in the ego vehicle's path, so the ego vehicle keeps its plan.",
        )
    ]
    return SceneEdit(
        "remove",
        new_scene,
        "keep",
        scene.agent_boxes[i].copy(),
        scene.agent_futures[i].copy(),
        int(scene.agent_labels[i]),
        i,
        qa,
    )


def edit_scene(scene: EditableScene, cfg: SceneEditConfig, seed: int) -> SceneEdit | None:
    """Add (probability ``add_probability``) or remove an agent, falling back to the other edit when the first is
    impossible. Deterministic in ``seed``; None when neither edit applies."""
    rng = np.random.default_rng(seed)
    first_add = bool(rng.random() < cfg.add_probability)
    order = (add_agent, remove_agent) if first_add else (remove_agent, add_agent)
    for fn in order:
        edit = fn(scene, cfg, rng)
        if edit is not None:
            return edit
    return None


__all__ = [
    "EditableScene",
    "EgoRule",
    "Lane",
    "SceneEdit",
    "add_agent",
    "added_collides",
    "edit_scene",
    "ego_collides",
    "lane_at",
    "line_crossings",
    "remove_agent",
]
