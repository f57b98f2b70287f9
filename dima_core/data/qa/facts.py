"""Everything the QA templates need about one keyframe, computed once: key objects, motions, action rollouts.

Key objects (DriveLM picks 3 to 6 objects that affect the ego's action) are chosen by relevance tier, then distance:
0 in the ego path (now or within the 3 s future), 1 crossing the ego path, 2 moving within ``near_radius_m``,
3 any other road user. Static obstacles (barriers, cones, debris) only qualify in tiers 0-1 when
``static_objects_only_in_path``. An object must be in the key window (ego frame), have a nuScenes visibility level
of at least ``min_visibility`` and at least ``min_visible_pixels`` unoccluded pixels in some camera. Tags are
numbered c1, c2, ... in priority order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dima_core.data.drivelm import CTag, KeyObject
from dima_core.data.geometry import box_corners_2d, boxes_overlap
from dima_core.data.qa import describe
from dima_core.data.qa.actions import (
    ACTIONS,
    boundary_polylines,
    collides,
    crosses_boundary,
    ego_footprint,
    min_gap,
    rollout,
)
from dima_core.data.qa.config import QAConfig
from dima_core.data.qa.motion import (
    AgentMotion,
    EgoBehaviour,
    EgoPath,
    agent_motion,
    crosses_ego_path,
    ego_behaviour,
    in_ego_path,
)
from dima_core.data.qa.projection import ObjectLocation, locate_objects
from dima_core.data.sample import DrivingSample

TIER_IN_PATH = 0
TIER_CROSSING = 1
TIER_NEAR_MOVING = 2
TIER_OTHER = 3

# Agents farther than this never affect a 3 s rollout (50 m/s closing speed would be needed); skipping them keeps
# the action checks cheap on crowded real scenes.
_ROLLOUT_RADIUS_M = 60.0


@dataclass
class ObjectFacts:
    """One agent as the templates see it."""

    agent_index: int
    category: str  # full nuScenes category name
    noun: str
    direction: str  # DriveLM direction words from the ego ("front left")
    distance: float  # m from the ego origin
    s: float  # arc length along the ego path (negative behind)
    d: float  # lateral offset from the ego path, left positive
    motion: AgentMotion
    in_path: bool
    crossing: bool
    tier: int
    location: ObjectLocation | None = None
    tag: CTag | None = None  # set for key objects

    @property
    def is_static(self) -> bool:
        return describe.is_static_category(self.category)

    def key_object(self) -> KeyObject:
        """DriveLM ``key_object_infos`` entry (requires ``tag`` and ``location``)."""
        assert self.tag is not None and self.location is not None
        return KeyObject(
            tag=self.tag,
            category=describe.drivelm_category(self.category),
            status="Moving" if self.motion.moving else "Stationary",
            visual_description=describe.sentence(self.noun),
            bbox_2d=self.location.bbox,
        )


@dataclass
class ActionOutcome:
    """One candidate ego action rolled out against the scene."""

    xy: np.ndarray  # (FUTURE_STEPS, 2)
    yaw: np.ndarray  # (FUTURE_STEPS,)
    hits: set[int] = field(default_factory=set)  # agent indices the footprint collides with
    gaps: dict[int, float] = field(default_factory=dict)  # agent index -> closest clearance proxy, m
    crosses_boundary: bool = False

    @property
    def dangerous(self) -> bool:
        return bool(self.hits) or self.crosses_boundary


@dataclass
class FrameFacts:
    sample: DrivingSample
    cfg: QAConfig
    path: EgoPath
    behaviour: EgoBehaviour
    objects: list[ObjectFacts]  # every agent, indexed like sample.agents
    key_objects: list[ObjectFacts]  # priority order, tagged c1..cN
    actions: dict[str, ActionOutcome]  # by EgoAction.key


def _in_window(x: float, y: float, cfg: QAConfig) -> bool:
    return cfg.key_x_range[0] <= x <= cfg.key_x_range[1] and cfg.key_y_range[0] <= y <= cfg.key_y_range[1]


def analyse(sample: DrivingSample, cfg: QAConfig) -> FrameFacts:
    """Compute the facts of one keyframe (deterministic: no randomness, stable tie-breaking by agent index)."""
    path = EgoPath(sample, cfg)
    behaviour = ego_behaviour(sample, cfg)
    agents = sample.agents
    locations = locate_objects(sample)

    objects: list[ObjectFacts] = []
    for i in range(len(agents)):
        box = agents.boxes[i]
        x, y = float(box[0]), float(box[1])
        motion = agent_motion(agents, i, cfg)
        s, d = path.frenet(box[:2])
        on_path = in_ego_path(path, agents, i, motion)
        crossing = crosses_ego_path(path, agents, i, motion)
        distance = math.hypot(x, y)
        if on_path:
            tier = TIER_IN_PATH
        elif crossing:
            tier = TIER_CROSSING
        elif motion.moving and distance <= cfg.near_radius_m:
            tier = TIER_NEAR_MOVING
        else:
            tier = TIER_OTHER
        objects.append(
            ObjectFacts(
                agent_index=i,
                category=agents.category_names[i],
                noun=describe.noun(agents.category_names[i]),
                direction=describe.direction(x, y),
                distance=distance,
                s=s,
                d=d,
                motion=motion,
                in_path=on_path,
                crossing=crossing,
                tier=tier,
                location=locations.get(i),
            )
        )

    candidates = []
    for obj in objects:
        box = agents.boxes[obj.agent_index]
        if obj.location is None or obj.location.visible_pixels < cfg.min_visible_pixels:
            continue
        if not _in_window(float(box[0]), float(box[1]), cfg):
            continue
        if int(agents.visibility[obj.agent_index]) < cfg.min_visibility:
            continue
        if obj.is_static and cfg.static_objects_only_in_path and obj.tier > TIER_CROSSING:
            continue
        # In-path objects are ranked by how soon the ego reaches them; the rest by distance.
        order = obj.s if (obj.tier == TIER_IN_PATH and obj.s > 0) else obj.distance
        candidates.append((obj.tier, order, obj.agent_index, obj))
    candidates.sort(key=lambda c: c[:3])
    key_objects = [c[3] for c in candidates[: cfg.max_key_objects]]
    for k, obj in enumerate(key_objects, start=1):
        assert obj.location is not None
        obj.tag = CTag(k, obj.location.camera, round(obj.location.pixel[0], 1), round(obj.location.pixel[1], 1))

    # Agents the ego already overlaps (annotation noise, or the ego's own trailer) would make every action look
    # dangerous; they are left out of the rollout checks.
    start = ego_footprint(0.0, 0.0, 0.0)
    near = []
    for obj in objects:
        if obj.distance > _ROLLOUT_RADIUS_M:
            continue
        box = agents.boxes[obj.agent_index]
        agent_now = box_corners_2d(float(box[0]), float(box[1]), float(box[6]), float(box[4]), float(box[3]))
        if boxes_overlap(start, agent_now):
            continue
        near.append(obj)
    boundaries = boundary_polylines(sample.vector_map.polylines, sample.vector_map.labels)
    actions: dict[str, ActionOutcome] = {}
    for action in ACTIONS:
        xy, yaw = rollout(action, sample.ego_status.speed, path)
        outcome = ActionOutcome(xy=xy, yaw=yaw, crosses_boundary=crosses_boundary(xy, boundaries))
        for obj in near:
            box = agents.boxes[obj.agent_index]
            gap = min_gap(xy, yaw, box, obj.motion)
            outcome.gaps[obj.agent_index] = gap
            # Bounding circles apart by more than the margin: the boxes cannot touch, skip the exact test.
            if gap <= cfg.collision_margin_m and collides(xy, yaw, box, obj.motion, cfg.collision_margin_m):
                outcome.hits.add(obj.agent_index)
        actions[action.key] = outcome
    return FrameFacts(sample, cfg, path, behaviour, objects, key_objects, actions)


__all__ = [
    "ActionOutcome",
    "FrameFacts",
    "ObjectFacts",
    "TIER_CROSSING",
    "TIER_IN_PATH",
    "TIER_NEAR_MOVING",
    "TIER_OTHER",
    "analyse",
]
