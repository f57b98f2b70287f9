"""Options of the bag player (``dima bag play``), ROS-free so the CLI can declare them without importing rclpy.

The player itself is :mod:`dima_ros.bag_player`; it takes a :class:`PlayOptions`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

DEFAULT_CLOCK_HZ = 40.0  # ros2 bag play --clock's default frequency


@dataclass
class PlayOptions:
    """How to play a bag.

    Attributes:
        rate: playback speed factor; wall duration = bag duration / rate.
        loop: replay until stopped.
        start_paused: wait for the ``~/resume`` service before the first message.
        topics: play only these topics (None: all).
        clock_hz: /clock frequency (wall Hz) while waiting between messages; 0 = only at message times.
        delay_s: wall seconds to wait before the first message.
        wait_for: topics that must have a subscriber before playing starts.
        wait_timeout_s: limit for ``wait_for``.
        drain_timeout_s: at the end, how long to wait for reliable subscribers to acknowledge.
    """

    rate: float = 1.0
    loop: bool = False
    start_paused: bool = False
    topics: list[str] | None = None
    clock_hz: float = DEFAULT_CLOCK_HZ
    delay_s: float = 0.0
    wait_for: list[str] = field(default_factory=list)
    wait_timeout_s: float = 60.0
    drain_timeout_s: float = 5.0

    def validate(self) -> None:
        """Raise ValueError naming the bad option."""
        if not self.rate > 0:
            raise ValueError(f"--rate must be > 0, got {self.rate}")
        if self.clock_hz < 0:
            raise ValueError(f"--clock-hz must be >= 0, got {self.clock_hz}")
        if self.delay_s < 0:
            raise ValueError(f"--delay must be >= 0, got {self.delay_s}")
        if self.wait_timeout_s <= 0:
            raise ValueError(f"--wait-timeout must be > 0, got {self.wait_timeout_s}")
        if self.drain_timeout_s < 0:
            raise ValueError(f"--drain-timeout must be >= 0, got {self.drain_timeout_s}")


def add_play_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``play`` arguments, shared by ``dima bag play`` and ``python -m dima_ros.bag_player``."""
    parser.add_argument("bag", help="rosbag2 directory (MCAP or SQLite3), e.g. written by `dima bag convert`")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (2 = twice as fast)")
    parser.add_argument("--loop", action="store_true", help="replay until interrupted")
    parser.add_argument(
        "--start-paused", action="store_true", help="wait for ~/resume (std_srvs/Trigger) before the first message"
    )
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics (default: all)")
    parser.add_argument(
        "--clock-hz",
        type=float,
        default=DEFAULT_CLOCK_HZ,
        help=f"/clock frequency while waiting between messages (wall Hz, default {DEFAULT_CLOCK_HZ:g}; "
        "0 = only at message times)",
    )
    parser.add_argument("--delay", type=float, default=0.0, metavar="S", help="wall seconds to wait before playing")
    parser.add_argument(
        "--wait-for",
        action="append",
        default=[],
        metavar="TOPIC",
        help="do not start until TOPIC has a subscriber (repeatable), e.g. the planner's camera input",
    )
    parser.add_argument("--wait-timeout", type=float, default=60.0, metavar="S", help="limit for --wait-for")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="at the end, wait up to S seconds for reliable subscribers to acknowledge",
    )


def options_from_args(args: argparse.Namespace) -> PlayOptions:
    """PlayOptions from parsed :func:`add_play_arguments` arguments (validated)."""
    options = PlayOptions(
        rate=args.rate,
        loop=args.loop,
        start_paused=args.start_paused,
        topics=list(args.topics) if args.topics else None,
        clock_hz=args.clock_hz,
        delay_s=args.delay,
        wait_for=list(args.wait_for),
        wait_timeout_s=args.wait_timeout,
        drain_timeout_s=args.drain_timeout,
    )
    options.validate()
    return options


__all__ = ["DEFAULT_CLOCK_HZ", "PlayOptions", "add_play_arguments", "options_from_args"]
