#!/usr/bin/env python3
"""Serve dima/srv/AskScene with a deterministic echo, until interrupted or --timeout seconds pass.

    ask_scene_server.py --service /dima_test/ask [--timeout 120]

Reply: answer = "echo:<question>|stamp=<sec>.<nanosec>|n=<call number>", success = True, latency_ms = 12.5;
a question starting with "fail" gets success = False, error = "asked to fail: <question>", empty answer.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException

from dima.srv import AskScene


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--service", required=True)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    rclpy.init()
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = rclpy.create_node(f"ask_scene_server_{os.getpid()}")
    calls = 0

    def handle(request: AskScene.Request, response: AskScene.Response) -> AskScene.Response:
        nonlocal calls
        calls += 1
        if request.question.startswith("fail"):
            response.success = False
            response.error = f"asked to fail: {request.question}"
            response.answer = ""
        else:
            response.success = True
            response.error = ""
            response.answer = f"echo:{request.question}|stamp={request.stamp.sec}.{request.stamp.nanosec}|n={calls}"
        response.latency_ms = 12.5
        return response

    node.create_service(AskScene, args.service, handle)
    print(f"READY domain={os.environ.get('ROS_DOMAIN_ID')} service={args.service}", flush=True)
    deadline = time.monotonic() + args.timeout
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        print(f"SERVED {calls}", flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
