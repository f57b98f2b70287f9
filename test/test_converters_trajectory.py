"""dima_ros.converters.trajectory on real dima/msg/Trajectory and nav_msgs/Path messages, without DDS: the builder's
timing / heading / velocity conventions, the round trip, and the simulator's refusals (frame, timing)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ros_helpers.testing import require_ros


@pytest.fixture(scope="module", autouse=True)
def _ros_available() -> None:
    require_ros()


def _plan(points: int = 6) -> np.ndarray:
    """(T, 2): 1 m per 0.5 s straight ahead, then a left turn (y grows)."""
    t = np.arange(1, points + 1, dtype=np.float64)
    return np.stack([t, np.maximum(t - 3.0, 0.0)], axis=1)


def _build(selected=None, candidates=None, frame_id: str = "base_link", stamp_ns: int = 1_533_151_603_512_404_000):
    from dima.msg import Trajectory
    from dima_ros.converters.stamps import ns_to_stamp
    from dima_ros.converters.trajectory import trajectory_messages

    selected = _plan() if selected is None else selected
    return trajectory_messages(
        ns_to_stamp(stamp_ns), frame_id, Trajectory.COMMAND_LEFT, Trajectory.MODE_VISION, selected, candidates, 12.5
    )


def test_builder_conventions() -> None:
    from dima.msg import Trajectory
    from dima_ros.converters.stamps import stamp_to_ns
    from dima_ros.converters.trajectory import waypoint_times

    traj, path = _build()
    assert isinstance(traj, Trajectory)
    assert stamp_to_ns(traj.header.stamp) == 1_533_151_603_512_404_000 and traj.header.frame_id == "base_link"
    assert (traj.command, traj.mode, traj.processing_time_ms) == (1, "vision", 12.5)
    np.testing.assert_allclose(waypoint_times(traj), 0.5 * np.arange(1, 7))
    assert (traj.points[0].time_from_start.sec, traj.points[0].time_from_start.nanosec) == (0, 500_000_000)
    assert (traj.points[-1].time_from_start.sec, traj.points[-1].time_from_start.nanosec) == (3, 0)
    # Heading of the segment reaching each point: 0 on the straight part, 45 deg once it turns.
    yaws = [2 * math.atan2(p.pose.orientation.z, p.pose.orientation.w) for p in traj.points]
    np.testing.assert_allclose(yaws, [0, 0, 0, math.pi / 4, math.pi / 4, math.pi / 4], atol=1e-12)
    np.testing.assert_allclose(
        [p.longitudinal_velocity_mps for p in traj.points],
        [2, 2, 2, 2 * math.sqrt(2), 2 * math.sqrt(2), 2 * math.sqrt(2)],
        rtol=1e-6,
    )
    assert len(traj.candidate_positions) == 0 and traj.num_candidate_modes == 0
    # The Path has the same poses and header (RViz).
    assert path.header.frame_id == "base_link" and len(path.poses) == 6
    assert [p.pose for p in path.poses] == [p.pose for p in traj.points]


def test_round_trip_positions_and_candidates() -> None:
    from dima_ros.converters.trajectory import candidates_from_msg, trajectory_positions

    candidates = np.stack([_plan(), _plan() * 0.5, -_plan()]).astype(np.float32)
    traj, _ = _build(candidates[1].astype(np.float64), candidates)
    xy = trajectory_positions(traj)
    assert xy.shape == (6, 2) and xy.dtype == np.float64
    np.testing.assert_array_equal(xy, candidates[1])
    back = candidates_from_msg(traj)
    assert back.shape == (3, 6, 2) and back.dtype == np.float32
    np.testing.assert_array_equal(back, candidates)
    assert candidates_from_msg(_build()[0]) is None


def test_builder_refuses_wrong_shapes_but_passes_values_through() -> None:
    from dima_ros.converters.trajectory import trajectory_positions

    with pytest.raises(ValueError, match=r"\(T, 2\) positions, got shape \[6\]"):
        _build(np.zeros(6))
    with pytest.raises(ValueError, match=r"\(M, T, 2\) positions, got shape \[6, 2\]"):
        _build(candidates=_plan())
    # Non-finite values are the consumer's to refuse (the simulator counts them): the builder keeps them.
    bad = _plan()
    bad[2, 1] = math.nan
    assert np.isnan(trajectory_positions(_build(bad)[0])[2, 1])
    assert trajectory_positions(_build(np.zeros((0, 2)))[0]).shape == (0, 2)


def test_malformed_candidates_are_refused() -> None:
    from dima_ros.converters.trajectory import candidates_from_msg

    traj, _ = _build(candidates=np.stack([_plan(), _plan()]))
    traj.num_candidate_modes = 3
    with pytest.raises(ValueError, match="24 values for 3 modes x 6 points x 2"):
        candidates_from_msg(traj)


def test_simulator_reads_a_plan_and_refuses_frame_and_timing() -> None:
    from dima_ros.converters.trajectory import TrajectoryRejected, plan_from_trajectory

    np.testing.assert_array_equal(plan_from_trajectory(_build()[0]), _plan())
    with pytest.raises(TrajectoryRejected, match="trajectory in frame 'map', expected 'base_link'") as err:
        plan_from_trajectory(_build(frame_id="map")[0])
    assert err.value.kind == "frame"
    traj, _ = _build()
    for i, point in enumerate(traj.points):  # 0.1 s apart instead of 0.5 s
        point.time_from_start.sec, point.time_from_start.nanosec = 0, 100_000_000 * (i + 1)
    with pytest.raises(
        TrajectoryRejected,
        match=r"waypoints at \[0.1, 0.2, 0.3, 0.4, 0.5, 0.6\] s, expected "
        r"\[0.5, 1.0, 1.5, 2.0, 2.5, 3.0\] s",
    ) as err:
        plan_from_trajectory(traj)
    assert err.value.kind == "timing"
    # Within the nanosecond-rounding tolerance is fine; another number of points is the episode's check, not this.
    traj, _ = _build()
    traj.points[0].time_from_start.nanosec += 900_000
    assert plan_from_trajectory(traj).shape == (6, 2)
    assert plan_from_trajectory(_build(_plan(5))[0]).shape == (5, 2)
    bad = _plan()
    bad[0, 0] = math.inf
    assert np.isinf(plan_from_trajectory(_build(bad)[0])[0, 0])  # finiteness: ClosedLoopEpisode.apply_plan
