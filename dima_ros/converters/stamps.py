"""``builtin_interfaces`` time <-> integer nanoseconds: the one conversion every node and tool of dima_ros uses.

ROS stamps are ``(sec: int32, nanosec: uint32 < 1e9)``; DiMA's runtime keys frames by one integer nanosecond value
(``dima_core.runtime.frame_sync``), because integer arithmetic keeps equal stamps equal where float seconds would not.
The rclpy message classes do not check the ranges when a field is set (only when the message is serialised, far from
the cause), so the functions that build a time check them and raise :class:`ValueError` naming the value. Reading a
received time never raises: a ``nanosec`` of 1e9 or more (legal in the uint32 field) still names one instant, read
as ``sec * 1e9 + nanosec`` as ``rclpy.time.Time.from_msg`` does, so a subscription callback cannot die on it.

Works on any object with ``sec`` / ``nanosec`` fields: rclpy's ``builtin_interfaces.msg.Time`` / ``Duration``, a
``rosgraph_msgs/Clock``'s ``clock`` field, or a ``rosbags`` message.
"""

from __future__ import annotations

from typing import Any

from builtin_interfaces.msg import Duration, Time

NS_PER_S = 1_000_000_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def split_ns(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> ``(sec, nanosec)`` with ``0 <= nanosec < 1e9`` (negative times floor, as ROS does).

    Raises:
        ValueError: ``ns`` is not an integer, or its seconds do not fit the messages' int32 ``sec``.
    """
    if isinstance(ns, bool) or not isinstance(ns, int):
        try:
            as_int = int(ns)
        except (TypeError, ValueError):
            raise ValueError(f"a stamp must be integer nanoseconds, got {ns!r}") from None
        if as_int != ns:
            raise ValueError(f"a stamp must be integer nanoseconds, got {ns!r}")
        ns = as_int
    sec, nanosec = divmod(ns, NS_PER_S)
    if not _INT32_MIN <= sec <= _INT32_MAX:
        raise ValueError(f"stamp {ns} ns is outside the int32 seconds a ROS time can hold")
    return int(sec), int(nanosec)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (or ``Duration``) -> integer nanoseconds (``sec * 1e9 + nanosec``, never raises
    for a received message: see the module docstring)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> ``builtin_interfaces.msg.Time`` (ValueError as :func:`split_ns`)."""
    sec, nanosec = split_ns(ns)
    return Time(sec=sec, nanosec=nanosec)


def set_stamp(target: Any, ns: int) -> None:
    """Write ``ns`` into an existing time field (``msg.header.stamp``, ``clock_msg.clock``) in place."""
    target.sec, target.nanosec = split_ns(ns)


def seconds_to_duration(seconds: float) -> Duration:
    """Float seconds (``>= 0``, finite) -> ``builtin_interfaces.msg.Duration``, rounded to the nanosecond.

    Raises:
        ValueError: ``seconds`` is negative or not finite.
    """
    seconds = float(seconds)
    if not seconds >= 0.0 or seconds == float("inf"):
        raise ValueError(f"a duration must be finite and non-negative, got {seconds!r} s")
    sec, nanosec = split_ns(round(seconds * NS_PER_S))
    return Duration(sec=sec, nanosec=nanosec)


def duration_to_seconds(duration: Any) -> float:
    """``builtin_interfaces/Duration`` -> float seconds."""
    return stamp_to_ns(duration) / NS_PER_S


__all__ = [
    "NS_PER_S",
    "duration_to_seconds",
    "ns_to_stamp",
    "seconds_to_duration",
    "set_stamp",
    "split_ns",
    "stamp_to_ns",
]
