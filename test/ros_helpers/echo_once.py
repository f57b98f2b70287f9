#!/usr/bin/env python3
"""Subscribe to one topic, write the first message received as JSON, exit 0.

    echo_once.py --type dima.msg.Trajectory --topic /t --out msg.json [--timeout 60]

Prints READY once the subscription exists. Reliable + transient-local QoS (matches the test publisher; a late join
still gets the last sample). Exit codes: 0 received, 2 timed out, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rclpy  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from ros_helpers.convert import import_type, msg_to_dict  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--type", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    msg_type = import_type(args.type)
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=5,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
    rclpy.init()
    node = rclpy.create_node(f"echo_once_{os.getpid()}")
    received: list = []
    node.create_subscription(msg_type, args.topic, received.append, qos)
    print(f"READY domain={os.environ.get('ROS_DOMAIN_ID')} topic={args.topic}", flush=True)
    deadline = time.monotonic() + args.timeout
    rc = 2
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if received:
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(json.dumps(msg_to_dict(received[0])))
                tmp.replace(args.out)  # atomic: the test never reads a half-written file
                print("RECEIVED", flush=True)
                rc = 0
                break
        else:
            print("TIMEOUT", flush=True)
    except KeyboardInterrupt:
        rc = 130
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
