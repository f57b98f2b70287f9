"""dima_ros.converters.stamps: ROS time <-> integer nanoseconds, on real builtin_interfaces / rosgraph_msgs messages
(no DDS)."""

from __future__ import annotations

import pytest

from ros_helpers.testing import require_ros

NS = 1_000_000_000


@pytest.fixture(scope="module", autouse=True)
def _ros_available() -> None:
    require_ros()


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_533_151_603_512_404_000, -1, -1_500_000_000])
def test_round_trip_is_exact(ns: int) -> None:
    from builtin_interfaces.msg import Time

    from dima_ros.converters.stamps import ns_to_stamp, stamp_to_ns

    stamp = ns_to_stamp(ns)
    assert isinstance(stamp, Time)
    assert 0 <= stamp.nanosec < NS
    assert stamp_to_ns(stamp) == ns


def test_fields_and_negative_times_floor() -> None:
    from builtin_interfaces.msg import Time

    from dima_ros.converters.stamps import NS_PER_S, ns_to_stamp, split_ns, stamp_to_ns

    assert NS_PER_S == NS
    stamp = ns_to_stamp(1_533_151_603_512_404_000)
    assert (stamp.sec, stamp.nanosec) == (1_533_151_603, 512_404_000)
    assert split_ns(-1) == (-1, 999_999_999)  # ROS's normalised form: nanosec is never negative
    assert stamp_to_ns(Time(sec=42, nanosec=999_999_999)) == 42 * NS + 999_999_999


def test_set_stamp_writes_header_and_clock_fields() -> None:
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Header

    from dima_ros.converters.stamps import set_stamp, stamp_to_ns

    header, clock = Header(), Clock()
    set_stamp(header.stamp, 7 * NS + 3)
    set_stamp(clock.clock, 5)
    assert (header.stamp.sec, header.stamp.nanosec) == (7, 3)
    assert stamp_to_ns(clock.clock) == 5


def test_integral_floats_are_accepted_fractional_are_not() -> None:
    import numpy as np

    from dima_ros.converters.stamps import split_ns

    assert split_ns(2.0e9) == (2, 0)  # type: ignore[arg-type]
    assert split_ns(np.int64(3 * NS + 1)) == (3, 1)
    for bad in (1.5, "soon", float("nan")):
        with pytest.raises(ValueError, match="integer nanoseconds"):
            split_ns(bad)  # type: ignore[arg-type]


def test_out_of_range_is_refused() -> None:
    from dima_ros.converters.stamps import ns_to_stamp

    with pytest.raises(ValueError, match="int32"):
        ns_to_stamp(2**31 * NS)
    with pytest.raises(ValueError, match="int32"):
        ns_to_stamp(-(2**31) * NS - 1)


def test_unnormalised_received_stamp_reads_as_one_instant() -> None:
    from builtin_interfaces.msg import Time

    from dima_ros.converters.stamps import stamp_to_ns

    # The uint32 field allows nanosec >= 1e9; a callback must not die on it (rclpy reads it the same way).
    assert stamp_to_ns(Time(sec=1, nanosec=NS + 5)) == 2 * NS + 5


def test_durations() -> None:
    from builtin_interfaces.msg import Duration

    from dima_ros.converters.stamps import duration_to_seconds, seconds_to_duration

    d = seconds_to_duration(0.5)
    assert isinstance(d, Duration) and (d.sec, d.nanosec) == (0, 500_000_000)
    assert (seconds_to_duration(3.0).sec, seconds_to_duration(3.0).nanosec) == (3, 0)
    assert duration_to_seconds(Duration(sec=2, nanosec=500_000_000)) == 2.5
    # A value a hair under a whole second rounds to the next second instead of producing nanosec == 1e9.
    assert (seconds_to_duration(2.9999999999).sec, seconds_to_duration(2.9999999999).nanosec) == (3, 0)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite and non-negative"):
            seconds_to_duration(bad)
