"""The ``main()`` every DiMA node shares when it runs as its own process (``python -m dima_ros.<node>``,
``ros2 run dima <node>``): init, build, spin, clean shutdown, and one clear line with exit status 2 when the node
cannot start (a bad parameter, a missing model) instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node

from dima_ros.dds_profile import use_large_data_profile


def run_node(
    name: str,
    make_node: Callable[[], Node],
    make_executor: Callable[[Node], Executor],
    argv: Sequence[str] | None = None,
) -> int:
    """Spin ``make_node()`` on ``make_executor(node)`` until Ctrl-C or ROS shutdown; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    use_large_data_profile()  # before init: Fast DDS reads it when the participant is created
    rclpy.init(args=list(argv) if argv is not None else sys.argv)
    node: Node | None = None
    try:
        try:
            node = make_node()
        except Exception as exc:  # noqa: BLE001 - a bad parameter or model: one clear line, non-zero exit
            print(f"dima {name}: cannot start: {exc}", file=sys.stderr, flush=True)
            return 2
        executor = make_executor(node)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


__all__ = ["run_node"]
