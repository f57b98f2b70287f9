"""``dima bag``: replay bags. ``convert`` nuScenes scenes to a rosbag2, ``play`` one with rclpy, ``info`` about one.

    dima bag convert --dataroot DIR --version V --scene NAME [--scene NAME ...] --out BAG [--storage mcap|sqlite3]
    dima bag play BAG [--rate R] [--loop] [--start-paused] [--topics T ...] [--wait-for T] [--delay S]
    dima bag info BAG

``convert`` and ``info`` are ROS-free (pure ``rosbags``) and live here; ``play`` needs rclpy and lives in
``dima_ros/commands/bag.py``, which the CLI imports only when ``play`` is given (dima_core/cli.py), so this module
and the rest of ``dima`` work on machines without ROS.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_convert_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``dima bag convert`` on the ``dima bag`` sub-parsers."""
    convert = commands.add_parser(
        "convert",
        help="write nuScenes (or synthetic) scenes as a rosbag2 (MCAP, ros2 profile, CDR)",
        description="Write the keyframes of nuScenes scenes as a rosbag2 replayable with `ros2 bag play --clock` "
        "or `dima bag play`: cameras (JPEG as stored), camera_info, /tf, /tf_static, /odom, /accel, the driving "
        "command and the ground truth for online evaluation (topic table: docs/bags.md).",
    )
    convert.add_argument("--dataroot", required=True, help="nuScenes (or synthetic world) root")
    convert.add_argument("--version", required=True, help="table version, e.g. v1.0-mini")
    convert.add_argument(
        "--scene", action="append", required=True, metavar="NAME", help="scene name, e.g. scene-0061 (repeatable)"
    )
    convert.add_argument("--out", required=True, metavar="BAG", help="bag directory to create")
    convert.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="storage plugin (default mcap)")
    convert.add_argument(
        "--scene-gap",
        type=float,
        default=1.0,
        metavar="S",
        help="multi-scene bags: each later scene starts S seconds after the previous one ends (default 1)",
    )
    convert.add_argument(
        "--keep-timestamps",
        action="store_true",
        help="write the dataset's timestamps unchanged, even for later scenes (replays then span the real gaps)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")
    convert.set_defaults(func=run_convert)
    return convert


def add_info_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``dima bag info`` on the ``dima bag`` sub-parsers."""
    info = commands.add_parser("info", help="topics, types, counts, QoS and duration of a rosbag2")
    info.add_argument("bag", help="rosbag2 directory")
    info.set_defaults(func=run_info)
    return info


def run_convert(args: argparse.Namespace) -> int:
    from dima_core.bag.convert import convert_scenes

    def progress(scene: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            logger.info("%s: %d/%d keyframes", scene, done, total)

    summary = convert_scenes(
        args.dataroot,
        args.version,
        args.scene,
        args.out,
        storage=args.storage,
        scene_gap_s=args.scene_gap,
        keep_timestamps=args.keep_timestamps,
        overwrite=args.overwrite,
        progress=progress,
    )
    print(summary.format())
    return 0


def run_info(args: argparse.Namespace) -> int:
    from dima_core.bag.reading import bag_info

    print(bag_info(args.bag).format())
    return 0
