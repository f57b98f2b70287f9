"""Online planning evaluation (the evaluator node's logic, without rclpy).

:class:`OnlineEvaluator` pairs planned trajectories with ground-truth frames by *exact* header stamp (both carry
the keyframe's CAM_FRONT stamp: docs/design.md, ROS interfaces; docs/bags.md) and scores each pair with the same
:class:`~dima_core.eval.planning_metrics.PlanningMetricAccumulator` and occupancy code as ``dima eval``, so the
online report of a replay equals ``dima eval --results`` on the same trajectories. Either side may arrive first;
unpaired entries wait in bounded buffers (oldest dropped, and counted, beyond ``max_pending``).
"""

from __future__ import annotations

import collections
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dima_core.runtime.config import param


@dataclass
class EvaluatorNodeConfig:
    """Parameters of the evaluator node (``config/evaluator_node.yaml``)."""

    report_path: str = param("", help="JSON report written at shutdown and on ~/report; empty = do not write")
    results_path: str = param(
        "",
        help="the paired trajectories as a results file (docs/design.md, Evaluation protocol), for "
        "`dima eval --results`",
    )
    max_pending: int = param(
        200, lo=1, hi=100_000, read_only=True, help="unpaired trajectories / GT frames kept per side"
    )
    summary_every: int = param(1, lo=1, hi=100_000, help="publish and log the running summary every N pairs")


class OnlineEvaluator:
    """Thread-safe pairing + scoring. Feed :meth:`add_trajectory` and :meth:`add_ground_truth`."""

    def __init__(self, max_pending: int = 200) -> None:
        from dima_core.eval.planning_metrics import PlanningMetricAccumulator

        self.accumulator = PlanningMetricAccumulator()
        self.max_pending = max_pending
        self._trajectories: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._ground_truth: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self.paired: dict[str, np.ndarray] = {}  # sample token -> (6, 2) trajectory, in pairing order
        self.num_trajectories = 0
        self.num_ground_truth = 0
        self.num_dropped = 0
        self._lock = threading.Lock()

    def add_trajectory(self, stamp_ns: int, trajectory: np.ndarray) -> bool:
        """A planned (T, 2) trajectory; returns True when it completed a pair."""
        with self._lock:
            self.num_trajectories += 1
            gt = self._ground_truth.pop(stamp_ns, None)
            if gt is None:
                self._keep(self._trajectories, stamp_ns, np.asarray(trajectory, np.float64))
                return False
            self._score(np.asarray(trajectory, np.float64), gt)
            return True

    def add_ground_truth(self, gt: Any) -> bool:
        """A decoded :class:`~dima_core.bag.messages.GroundTruth`; returns True when it completed a pair."""
        with self._lock:
            self.num_ground_truth += 1
            traj = self._trajectories.pop(gt.stamp_ns, None)
            if traj is None:
                self._keep(self._ground_truth, gt.stamp_ns, gt)
                return False
            self._score(traj, gt)
            return True

    def _keep(self, buffer: collections.OrderedDict[int, Any], stamp_ns: int, value: Any) -> None:
        buffer[stamp_ns] = value
        while len(buffer) > self.max_pending:
            buffer.popitem(last=False)
            self.num_dropped += 1

    def _score(self, traj: np.ndarray, gt: Any) -> None:
        from dima_core.eval.occupancy import build_occupancy

        acc = self.accumulator
        steps = gt.ego_future.shape[0]
        if traj.shape[0] < steps:
            raise ValueError(f"trajectory for {gt.sample_token} has {traj.shape[0]} points; {steps} are scored")
        pred = traj[:steps, :2]
        self.paired[gt.sample_token] = pred
        if not gt.has_full_future:  # as add_sample() counts it, before paying for the rasterisation
            acc.num_skipped_incomplete += 1
            return
        occupancy = build_occupancy(gt.agents, acc.occupancy_config)
        acc.add(pred, gt.ego_future, gt.ego_future_mask, occupancy, token=gt.sample_token, splits=gt.eval_splits)

    @property
    def num_paired(self) -> int:
        return len(self.paired)

    def report(self) -> dict[str, Any]:
        """The report of docs/design.md (Evaluation protocol) plus the pairing counters (``online``)."""
        with self._lock:
            report = self.accumulator.result()
            formula = report.pop("formula")
            report["method"] = "online"
            report["online"] = {
                "num_trajectories": self.num_trajectories,
                "num_ground_truth_frames": self.num_ground_truth,
                "num_paired": self.num_paired,
                "num_trajectories_unpaired": len(self._trajectories),
                "num_ground_truth_unpaired": len(self._ground_truth),
                "num_dropped": self.num_dropped,
            }
            report["formula"] = formula
            return report

    def summary_line(self) -> str:
        """One log line: pairs so far and the VAD-convention averages."""
        report = self.report()
        vad = report["vad"]

        def fmt(v: float | None, unit: str) -> str:
            return "n/a" if v is None else f"{v:.3f}{unit}"

        return (
            f"{report['online']['num_paired']} pairs, {report['num_samples']} scored: "
            f"L2 avg {fmt(vad['l2']['avg'], ' m')}, collision avg {fmt(vad['collision']['avg'], ' %')} (VAD)"
        )

    def write(self, report_path: str = "", results_path: str = "") -> dict[str, Any]:
        """Write the report (atomically) and/or the paired trajectories as a results file; returns the report."""
        from dima_core.eval.results_file import write_results

        report = self.report()
        if report_path:
            path = Path(report_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        if results_path:
            with self._lock:
                paired = dict(self.paired)
            write_results(results_path, paired, meta={"method": "dima_ros evaluator (online replay)"})
        return report


__all__ = ["EvaluatorNodeConfig", "OnlineEvaluator"]
