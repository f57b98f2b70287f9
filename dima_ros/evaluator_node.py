"""``EvaluatorNode``: online planning metrics of a replay, with the same code as ``dima eval``.

    python -m dima_ros.evaluator_node --ros-args --params-file config/evaluator_node.yaml -p report_path:=report.json

- ``~/input/trajectory`` (dima/msg/Trajectory, reliable, depth 100): the planner's output (remap it to
  ``/dima_planner/output/trajectory``);
- ``~/input/ground_truth`` (dima/msg/GroundTruthFrame, reliable, depth 100; ``/evaluation/ground_truth`` from
  ``dima bag convert``).

The two are paired by exact header stamp and scored by :class:`dima_core.runtime.online_eval.OnlineEvaluator`
(PlanningMetricAccumulator + occupancy, docs/design.md, Evaluation protocol). Every ``summary_every`` pairs the
running summary is logged and published as JSON on ``~/output/summary`` (std_msgs/String). The JSON report (and, with
``results_path``, the paired trajectories as a results file for ``dima eval --results``) is written on the
``~/report`` service (std_srvs/Trigger, message = the report path and summary) and when the node is destroyed.
Parameters: :class:`dima_core.runtime.online_eval.EvaluatorNodeConfig` (``config/evaluator_node.yaml``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from dima.msg import GroundTruthFrame, Trajectory
from dima_core.bag.messages import ground_truth_from_message
from dima_core.runtime.online_eval import EvaluatorNodeConfig, OnlineEvaluator
from dima_ros.converters.stamps import stamp_to_ns
from dima_ros.converters.trajectory import trajectory_positions
from dima_ros.node_main import run_node
from dima_ros.parameters import ConfigParameters

NODE_NAME = "dima_evaluator"

log = logging.getLogger(__name__)


class EvaluatorNode(Node):
    """Pairs trajectories with GT frames by stamp and keeps the running planning metrics."""

    def __init__(
        self, node_name: str = NODE_NAME, *, parameter_overrides: list[Any] | None = None, **node_kwargs: Any
    ) -> None:
        super().__init__(node_name, parameter_overrides=parameter_overrides, **node_kwargs)
        self._params = ConfigParameters(self, EvaluatorNodeConfig)
        self.evaluator = OnlineEvaluator(self.config.max_pending)
        self._written = False
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)  # GT_QOS depth: a slow scorer loses nothing
        self.create_subscription(Trajectory, "~/input/trajectory", self._on_trajectory, qos)
        self.create_subscription(GroundTruthFrame, "~/input/ground_truth", self._on_ground_truth, qos)
        self._summary_pub = self.create_publisher(String, "~/output/summary", 10)
        self.create_service(Trigger, "~/report", self._on_report)

    @property
    def config(self) -> EvaluatorNodeConfig:
        return self._params.config

    def _on_trajectory(self, msg: Trajectory) -> None:
        traj = trajectory_positions(msg)
        if not np.isfinite(traj).all() or traj.shape[0] == 0:
            self.get_logger().warning("ignoring a trajectory with no or non-finite points")
            return
        if self.evaluator.add_trajectory(stamp_to_ns(msg.header.stamp), traj):
            self._paired()

    def _on_ground_truth(self, msg: GroundTruthFrame) -> None:
        try:
            gt = ground_truth_from_message(msg)
        except ValueError as exc:
            self.get_logger().warning(f"ignoring a malformed GroundTruthFrame: {exc}")
            return
        if self.evaluator.add_ground_truth(gt):
            self._paired()

    def _paired(self) -> None:
        if self.evaluator.num_paired % self.config.summary_every:
            return
        line = self.evaluator.summary_line()
        self.get_logger().info(line)
        report = self.evaluator.report()
        summary = {
            "num_paired": report["online"]["num_paired"],
            "num_samples": report["num_samples"],
            "vad": report["vad"],
            "uniad": report["uniad"],
        }
        self._summary_pub.publish(String(data=json.dumps(summary)))

    def write_report(self) -> dict[str, Any]:
        """Write the report / results files named by the parameters; returns the report."""
        cfg = self.config
        report = self.evaluator.write(cfg.report_path, cfg.results_path)
        self._written = True
        if cfg.report_path:
            self.get_logger().info(f"report written to {cfg.report_path}: {self.evaluator.summary_line()}")
        return report

    def _on_report(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            self.write_report()
        except (OSError, ValueError) as exc:
            response.success, response.message = False, f"writing the report failed: {exc}"
            return response
        response.success = True
        response.message = f"{self.config.report_path or '(no report_path)'}: {self.evaluator.summary_line()}"
        return response

    def destroy_node(self) -> None:
        # The report at shutdown: a replay that ends with Ctrl-C still leaves its metrics behind.
        try:
            self.write_report()
        except (OSError, ValueError) as exc:
            log.error("writing the evaluator report at shutdown failed: %s", exc)
        super().destroy_node()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dima_ros.evaluator_node --ros-args --params-file config/evaluator_node.yaml``."""
    from rclpy.executors import SingleThreadedExecutor

    return run_node("evaluator_node", EvaluatorNode, lambda node: SingleThreadedExecutor(), argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["EvaluatorNode", "NODE_NAME", "main"]
