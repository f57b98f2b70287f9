"""dima_ros.converters.qos without DDS: the recorded offered QoS of a bag -> the rclpy profile a replay offers (the
bag's own topic profiles, every policy that has an rclpy counterpart, durations, and the defaults). ``rosbags``
profiles are named tuples: the tests vary one with ``_replace``."""

from __future__ import annotations

import pytest

from ros_helpers.testing import require_ros


@pytest.fixture(scope="module", autouse=True)
def _ros_available() -> None:
    require_ros()


def test_the_bag_topic_profiles_map_onto_rclpy_qos() -> None:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, ReliabilityPolicy

    from dima_core.bag.topics import SENSOR_QOS, TF_STATIC_QOS
    from dima_ros.converters.qos import DEFAULT_QOS_DEPTH, qos_profile_from_bag

    static = qos_profile_from_bag(TF_STATIC_QOS)  # late subscribers still get the calibration
    assert (static.durability, static.reliability, static.history, static.depth) == (
        DurabilityPolicy.TRANSIENT_LOCAL,
        ReliabilityPolicy.RELIABLE,
        HistoryPolicy.KEEP_LAST,
        1,
    )
    sensor = qos_profile_from_bag(SENSOR_QOS)
    assert (sensor.durability, sensor.reliability, sensor.depth, sensor.liveliness) == (
        DurabilityPolicy.VOLATILE,
        ReliabilityPolicy.RELIABLE,
        10,
        LivelinessPolicy.AUTOMATIC,
    )
    default = qos_profile_from_bag(None)  # a topic recorded without a profile
    assert (default.history, default.depth, default.reliability, default.durability) == (
        HistoryPolicy.KEEP_LAST,
        DEFAULT_QOS_DEPTH,
        ReliabilityPolicy.RELIABLE,
        DurabilityPolicy.VOLATILE,
    )


def test_every_policy_and_duration_is_carried() -> None:
    from rclpy.duration import Duration
    from rclpy.qos import HistoryPolicy, LivelinessPolicy, ReliabilityPolicy
    from rosbags.interfaces import QosHistory, QosLiveliness, QosReliability, QosTime

    from dima_core.bag.topics import SENSOR_QOS
    from dima_ros.converters.qos import DEFAULT_QOS_DEPTH, qos_profile_from_bag

    recorded = SENSOR_QOS._replace(
        history=QosHistory.KEEP_ALL,
        depth=0,
        reliability=QosReliability.BEST_EFFORT,
        liveliness=QosLiveliness.MANUAL_BY_TOPIC,
        deadline=QosTime(sec=0, nsec=100_000_000),
        lifespan=QosTime(sec=2, nsec=5),
        liveliness_lease_duration=QosTime(sec=1, nsec=0),
    )
    profile = qos_profile_from_bag(recorded)
    assert (profile.history, profile.depth) == (HistoryPolicy.KEEP_ALL, DEFAULT_QOS_DEPTH)
    assert profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert profile.liveliness == LivelinessPolicy.MANUAL_BY_TOPIC
    assert profile.deadline == Duration(nanoseconds=100_000_000)
    assert profile.lifespan == Duration(nanoseconds=2_000_000_005)
    assert profile.liveliness_lease_duration == Duration(seconds=1)
    # rosbag2 writes 0 and 0x7fffffff s for "unset": both keep rclpy's own default, not a zero or ~68-year duration.
    unset = qos_profile_from_bag(SENSOR_QOS._replace(deadline=QosTime(sec=0x7FFFFFFF, nsec=0)))
    assert unset.deadline == qos_profile_from_bag(SENSOR_QOS).deadline
    # A keep-last depth of 0 is not a valid rclpy depth: at least one message is kept.
    assert qos_profile_from_bag(SENSOR_QOS._replace(depth=0)).depth == 1
