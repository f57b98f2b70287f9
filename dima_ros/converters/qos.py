"""rosbag2 QoS -> rclpy QoS: the profile a recorded topic was offered with, as a publisher offers it again.

A bag's metadata records each topic's ``offered_qos_profiles`` (read by ``rosbags`` as :class:`rosbags.interfaces.Qos`
tuples); a replay that offers the same profile keeps, e.g., ``/tf_static`` transient-local so a late subscriber still
gets the calibration. Used by the bag player (``dima bag play``) and the simulator's message publisher.
"""

from __future__ import annotations

from typing import Any

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability

from dima_ros.converters.stamps import NS_PER_S

# Keep-last depth when a bag records no profile, or a keep-all one (rosbag2's default for a recorded topic).
DEFAULT_QOS_DEPTH = 10


def qos_profile_from_bag(qos: Qos | None) -> QoSProfile:
    """The rclpy QoS for a recorded offered profile (rosbags tuple); reliable/volatile/keep-last 10 when None.

    SYSTEM_DEFAULT / UNKNOWN / BEST_AVAILABLE entries fall back to the same defaults, as rosbag2 does for profiles
    it cannot reproduce.
    """
    if qos is None:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=DEFAULT_QOS_DEPTH,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
    history = HistoryPolicy.KEEP_ALL if qos.history == QosHistory.KEEP_ALL else HistoryPolicy.KEEP_LAST
    reliability = (
        ReliabilityPolicy.BEST_EFFORT if qos.reliability == QosReliability.BEST_EFFORT else ReliabilityPolicy.RELIABLE
    )
    durability = (
        DurabilityPolicy.TRANSIENT_LOCAL
        if qos.durability == QosDurability.TRANSIENT_LOCAL
        else DurabilityPolicy.VOLATILE
    )
    liveliness = {
        QosLiveliness.MANUAL_BY_TOPIC: LivelinessPolicy.MANUAL_BY_TOPIC,
    }.get(qos.liveliness, LivelinessPolicy.AUTOMATIC)
    profile = QoSProfile(
        history=history,
        depth=max(1, int(qos.depth)) if history == HistoryPolicy.KEEP_LAST else DEFAULT_QOS_DEPTH,
        reliability=reliability,
        durability=durability,
        liveliness=liveliness,
    )

    def duration(t: Any) -> Duration | None:
        ns = int(t.sec) * NS_PER_S + int(t.nsec)
        # 0 means "unset"; rosbag2 also records 0x7fffffff s (infinite) for unset values: keep the default for both.
        return Duration(nanoseconds=ns) if 0 < ns < 0x7FFFFFFF * NS_PER_S else None

    for name in ("deadline", "lifespan", "liveliness_lease_duration"):
        value = duration(getattr(qos, name))
        if value is not None:
            setattr(profile, name, value)
    return profile


__all__ = ["DEFAULT_QOS_DEPTH", "qos_profile_from_bag"]
