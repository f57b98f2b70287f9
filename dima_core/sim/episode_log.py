"""What one closed-loop episode leaves behind: the contract between the simulator (``dima_core.sim``) and the
closed-loop metrics (``dima_core.eval.closed_loop``), the video writer and the reports.

Frames: the global map frame of the scene (x, y metres, yaw radians about +z). The ego's reference point is the
ego-pose origin (rear axle, nuScenes ``ego_pose``); its footprint is ``ego_length`` x ``ego_width`` centred
``ego_centre_offset`` metres ahead of that point (the same box as the open-loop collision metric). Agent positions
are box centres. Times are seconds from the start of the episode, at the simulation rate (``dt``, 10 Hz by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Column order of ``EpisodeLog.ego``.
EGO_X, EGO_Y, EGO_YAW, EGO_SPEED, EGO_ACCEL, EGO_STEER = range(6)


@dataclass
class LaneGeometry:
    """One lane (or junction connector) of the map, for driving-direction compliance.

    ``centerline`` (N, 2) runs in the lane's direction of travel; ``polygon`` (P, 2) is its surface outline.
    ``is_connector``: a lane inside a junction, where any heading along the connector is legal.
    """

    id: str
    centerline: np.ndarray
    polygon: np.ndarray
    is_connector: bool = False


@dataclass
class PlanRecord:
    """One planning cycle: when it was planned, from which ego state, and what the policy returned.

    ``trajectory_ego`` (6, 2) waypoints at 0.5 .. 3.0 s in the ego frame of the planning state (x forward, y left);
    ``trajectory_global`` (6, 2) the same points in the global frame. ``command`` the route command it was given
    (0 right, 1 left, 2 straight). ``latency_ms`` the policy's wall time (0 for a policy that was not timed).
    """

    time: float
    trajectory_ego: np.ndarray
    trajectory_global: np.ndarray
    command: int
    latency_ms: float = 0.0


@dataclass
class EpisodeLog:
    """Everything about one episode at every simulation step k = 0 .. K-1.

    Attributes:
        scenario, seed, policy: what was run (``policy`` is the policy's display name).
        dt: simulation step, seconds.
        times: (K,) seconds.
        ego: (K, 6) x, y, yaw, signed speed (m/s, negative when reversing), longitudinal acceleration (m/s^2),
            road-wheel steering angle (rad); columns ``EGO_*``.
        ego_length, ego_width, ego_centre_offset: the ego footprint (metres).
        agent_ids: (A,) int, stable ids of the other road users.
        agent_categories: (A,) nuScenes category names (``vehicle.car``, ``human.pedestrian.adult``, ...).
        agent_sizes: (A, 2) length, width (metres).
        agent_static: (A,) bool, parked/stopped vehicles and other objects that never move.
        agents: (A, K, 4) box centre x, y, yaw, signed speed.
        agent_present: (A, K) bool, the agent exists in the world at step k.
        drivable_area: (Multi)Polygon (shapely) of the drivable surface (roads + junctions, shoulders included).
        lanes: the map's lanes, for driving-direction compliance.
        route: (R, 2) the ego's route polyline (centerlines of its route lanes, in order of travel); progress is
            measured as arc length along it.
        expert_progress: metres of route the reference expert covered in the same duration (>= 0).
        route_reverse_segments: arc-length intervals [(s0, s1), ...] of the route the expert drives in reverse
            (three-point turn); empty otherwise.
        plans: one record per planning cycle.
        ended_early: why the episode stopped before its duration ("" if it ran to the end), e.g. "collision".
        rejected_plans: count of policy outputs that were refused (NaN, wrong shape): the ego kept its last plan.
        info: free-form provenance (world config digest, policy source, ...), JSON-serialisable.
        expert_route_progress: optional (K,) route arc length the expert had covered at each step (from 0), for
            the closed-loop "stuck" flag; without it the expert is assumed to move at its mean speed.
    """

    scenario: str
    seed: int
    policy: str
    dt: float
    times: np.ndarray
    ego: np.ndarray
    ego_length: float
    ego_width: float
    ego_centre_offset: float
    agent_ids: np.ndarray
    agent_categories: list[str]
    agent_sizes: np.ndarray
    agent_static: np.ndarray
    agents: np.ndarray
    agent_present: np.ndarray
    drivable_area: object
    lanes: list[LaneGeometry]
    route: np.ndarray
    expert_progress: float
    route_reverse_segments: list[tuple[float, float]] = field(default_factory=list)
    plans: list[PlanRecord] = field(default_factory=list)
    ended_early: str = ""
    rejected_plans: int = 0
    info: dict = field(default_factory=dict)
    # Added for dima_core.eval.closed_loop (stuck detection): (K,) metres of route the expert had covered at each
    # step (0 at step 0, expert_progress at the end); None when only the total is known.
    expert_route_progress: np.ndarray | None = None
    # JPEG bytes of the six cameras at each planning cycle (CAMERA_NAMES order), kept only when a video is wanted.
    camera_frames: list[list[bytes]] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        return int(self.times.shape[0])

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0]) if self.num_steps else 0.0

    def ego_box_centres(self) -> np.ndarray:
        """(K, 2) centre of the ego footprint at every step."""
        yaw = self.ego[:, EGO_YAW]
        return self.ego[:, :2] + self.ego_centre_offset * np.stack([np.cos(yaw), np.sin(yaw)], axis=1)


__all__ = [
    "EGO_ACCEL",
    "EGO_SPEED",
    "EGO_STEER",
    "EGO_X",
    "EGO_Y",
    "EGO_YAW",
    "EpisodeLog",
    "LaneGeometry",
    "PlanRecord",
]
