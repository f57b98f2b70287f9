"""``dima bag play``: publish a rosbag2 with rclpy (the pip-only ``ros2 bag play --clock``).

The rest of ``dima bag`` (``convert``, ``info``) is ROS-free and lives in ``dima_core/commands/bag.py``. The player is
:mod:`dima_ros.bag_player`; it is imported inside the handler, after the bag path is checked, so a wrong path is
reported without paying for rclpy and DDS start-up.
"""

from __future__ import annotations

import argparse

from dima_core.bag.play_options import add_play_arguments


def add_play_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``dima bag play`` on the ``dima bag`` sub-parsers (its one-line help is in dima_core/cli.py)."""
    play = commands.add_parser(
        "play",
        description="Publish a rosbag2's messages at their recorded times (scaled by --rate) with /clock and the "
        "recorded QoS, then exit. Needs rclpy (source tools/env.sh, or a ROS 2 install).",
    )
    add_play_arguments(play)  # ROS-free declaration shared with `python -m dima_ros.bag_player`
    play.set_defaults(func=run_play)
    return play


def run_play(args: argparse.Namespace) -> int:
    from dima_core.bag.reading import resolve_bag_path

    resolve_bag_path(args.bag)  # a missing / non-bag path is reported before paying for rclpy and DDS start-up
    try:
        from dima_ros import bag_player
    except ImportError as exc:
        raise ValueError(
            f"`dima bag play` needs rclpy ({exc}): run `source tools/env.sh` (pip-only ROS 2, see docs/setup.md) "
            "or source a ROS 2 installation"
        ) from exc
    try:
        return bag_player.run(args)
    except TimeoutError as exc:
        raise ValueError(str(exc)) from exc
