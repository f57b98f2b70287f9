"""Builders of hand-made samples, and the synthetic-world fixture, of the evaluation tests (test/conftest.py is
shared and owned elsewhere).

Everything is in the current ego frame (x forward, y left, metres), 6 future steps at 0.5 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dima_core.constants import COMMAND_STRAIGHT, DETECTION_CLASSES, FUTURE_STEPS, PAST_STEPS
from dima_core.data.ego_motion import driving_command
from dima_core.data.sample import AgentAnnotations, DrivingSample, EgoStatus, VectorMap
from dima_core.eval.occupancy import GRID_SIZE, world_to_grid

TIMES = 0.5 * np.arange(1, FUTURE_STEPS + 1)  # (6,) 0.5 .. 3.0 s


def straight(speed: float, y: float = 0.0) -> np.ndarray:
    """(6, 2) positions of constant speed along +x at lateral offset ``y``."""
    return np.stack([speed * TIMES, np.full(FUTURE_STEPS, y)], axis=-1)


def empty_occupancy() -> np.ndarray:
    """(6, 200, 200) bool, nothing occupied."""
    return np.zeros((FUTURE_STEPS, GRID_SIZE, GRID_SIZE), bool)


def occupy(occupancy: np.ndarray, step: int, x: float, y: float) -> None:
    """Mark the cell holding ego-frame point (x, y) occupied at step index ``step`` (0-based: step 1 is index 0)."""
    r, c = np.round(world_to_grid(np.array([x, y]))).astype(int)
    occupancy[step, r, c] = True


def make_agents(
    boxes: Sequence[Sequence[float]],
    future: Sequence[np.ndarray],
    future_yaw: Sequence[np.ndarray] | None = None,
    future_mask: Sequence[np.ndarray] | None = None,
    labels: Sequence[str] | None = None,
    num_lidar_points: Sequence[int] | None = None,
) -> AgentAnnotations:
    """AgentAnnotations from per-agent boxes (x, y, z, w, l, h, yaw) and (6, 2) futures; defaults: cars, all
    future steps valid, future yaw = current yaw, 10 lidar points."""
    n = len(boxes)
    box_arr = np.asarray(boxes, np.float32).reshape(n, 7)
    yaw = (
        np.stack([np.asarray(v, np.float32) for v in future_yaw])
        if future_yaw is not None
        else np.repeat(box_arr[:, 6:7], FUTURE_STEPS, axis=1)
    )
    mask = (
        np.stack([np.asarray(m, bool) for m in future_mask])
        if future_mask is not None
        else np.ones((n, FUTURE_STEPS), bool)
    )
    names = list(labels) if labels is not None else ["car"] * n
    return AgentAnnotations(
        boxes=box_arr,
        velocities=np.zeros((n, 2), np.float32),
        labels=np.array([DETECTION_CLASSES.index(c) for c in names], np.int64),
        category_names=[f"test.{c}" for c in names],
        instance_tokens=[f"inst{i}" for i in range(n)],
        annotation_tokens=[f"ann{i}" for i in range(n)],
        visibility=np.full((n,), 4, np.int64),
        num_lidar_points=np.asarray(num_lidar_points if num_lidar_points is not None else [10] * n, np.int64),
        future=np.stack([np.asarray(f, np.float32) for f in future]).reshape(n, FUTURE_STEPS, 2),
        future_yaw=yaw.reshape(n, FUTURE_STEPS),
        future_mask=mask.reshape(n, FUTURE_STEPS),
    )


def make_sample(
    token: str,
    ego_future: np.ndarray,
    ego_future_mask: np.ndarray | None = None,
    agents: AgentAnnotations | None = None,
    speed: float = 5.0,
    yaw_rate: float = 0.0,
    ego_past: np.ndarray | None = None,
    tags: Sequence[str] = (),
    split: str = "val",
) -> DrivingSample:
    """A DrivingSample with no cameras and no map: just what planning evaluation reads."""
    mask = np.ones(FUTURE_STEPS, bool) if ego_future_mask is None else np.asarray(ego_future_mask, bool)
    past = (
        np.asarray(ego_past, np.float32)
        if ego_past is not None
        else np.stack([-speed * 0.5 * np.arange(PAST_STEPS, 0, -1), np.zeros(PAST_STEPS)], axis=-1)
    )
    future = np.asarray(ego_future, np.float32)
    return DrivingSample(
        token=token,
        scene_token="scene0",
        scene_name="scene-0000",
        location="test",
        timestamp_us=0,
        prev_token="",
        next_token="",
        cameras=[],
        ego_to_global=np.eye(4),
        ego_status=EgoStatus(speed=speed, acceleration=np.zeros(2), yaw_rate=yaw_rate, source="ego_pose"),
        ego_future=future,
        ego_future_yaw=np.zeros(FUTURE_STEPS, np.float32),
        ego_future_mask=mask,
        ego_past=past,
        ego_past_mask=np.ones(PAST_STEPS, bool),
        command=driving_command(future, mask) if mask.any() else COMMAND_STRAIGHT,
        agents=agents if agents is not None else AgentAnnotations.empty(),
        vector_map=VectorMap(polylines=np.zeros((0, 20, 2), np.float32), labels=np.zeros((0,), np.int64)),
        split=split,
        tags=list(tags),
    )


# ----------------------------------------------------------------------------------------------------- synthetic world


@dataclass
class EvalWorld:
    """The session's synthetic world (test/data_fixtures.py) seen by the evaluation tests.

    Attributes:
        dataroot, version: what ``dima eval --dataroot/--version`` takes.
        samples: every DrivingSample of the world, in reader order.
    """

    dataroot: Path
    version: str
    samples: list[DrivingSample]

    def tokens(self, split: str) -> list[str]:
        return [s.token for s in self.samples if s.split == split]


@pytest.fixture(scope="module")
def eval_world(synth_world, samples) -> EvalWorld:
    """Reuses the data tests' session world (registered for every test module in test/conftest.py),
    so a full run generates one world, not one per engineer. It has a train and a val scene, a three-point turn
    (a long-tail tag and a turning GT future) and pedestrians."""
    return EvalWorld(dataroot=Path(synth_world.dataroot), version=synth_world.version, samples=list(samples))
