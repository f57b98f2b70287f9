"""The MLLM node's DiMA-Dual trajectory, without rclpy: the planning from one dima/msg/BeamTokens frame
(:func:`plan_dual`) and a worker thread that only ever plans the newest frame (:class:`LatestFrameWorker`).

Why newest-only: one LLM forward takes from tens of milliseconds (SmolLM2-135M on a CPU) to hundreds (7B); frames
arrive at the planner's rate. A queue would publish ever older plans; instead a frame that arrives while another is
being planned replaces the one waiting (counted as ``replaced``), so the published plan is always of the latest
scene the worker could reach, and lag stays bounded by one planning time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:  # annotations only: torch and the models are imported inside the functions that use them
    import torch

    from dima_core.models.beam import BeamTokens
    from dima_core.models.dima import DimaJointModel

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


def plan_feature_from_flat(values: Sequence[float], shape: Sequence[int]) -> torch.Tensor:
    """The planner's penultimate ego feature from dima/msg/BeamTokens ``plan_feature`` / ``plan_feature_shape``:
    a (1, C_plan) float32 tensor.

    Raises:
        ValueError: an empty feature (the planner published none) or a shape that does not fit the values.
    """
    import torch

    array = np.asarray(values, dtype=np.float32)
    shape = [int(d) for d in shape]
    if array.size == 0:
        raise ValueError(
            "BeamTokens.plan_feature is empty: the planner publishes it only when its backend outputs "
            "'ego_feature' (export with BEAM outputs)"
        )
    if len(shape) != 2 or shape[0] != 1 or int(np.prod(shape)) != array.size:
        raise ValueError(
            f"BeamTokens.plan_feature: shape {shape} does not fit {array.size} values (expected [1, channels])"
        )
    return torch.from_numpy(array.reshape(shape))


@dataclass
class DualPlan:
    """One DiMA-Dual plan: positions in the ego frame of the planned frame (metres, x forward, y left)."""

    stamp_ns: int  # the BeamTokens frame it was planned on
    command: int  # the driving command that selected ``trajectory``
    trajectories: np.ndarray  # (M, T, 2) one candidate per command
    trajectory: np.ndarray  # (T, 2) candidate ``command``
    latency_ms: float  # wall time of the teacher forward + fusion + head


def plan_dual(
    model: DimaJointModel, beam: BeamTokens, plan_feature: torch.Tensor, command: int, stamp_ns: int
) -> DualPlan:
    """DiMA-Dual on one frame: :meth:`~dima_core.models.dima.DimaJointModel.dual_trajectories`.

    Args:
        model: a :class:`~dima_core.models.dima.DimaJointModel` with its teacher, in eval mode.
        beam: one sample's :class:`~dima_core.models.beam.BeamTokens` (any device; moved to the model's).
        plan_feature: (1, C_plan) the planner's penultimate ego feature of the same frame.
        command: the driving command (0 right, 1 left, 2 straight; VAD order).
    Raises:
        ValueError: a command outside the planner's commands, or features of the wrong width.
    """
    import torch

    num_commands = model.planner.config.planner.num_commands
    if not 0 <= int(command) < num_commands:
        raise ValueError(f"command {command} is not one of the planner's {num_commands} commands")
    device = next(model.parameters()).device
    start = time.perf_counter()
    with torch.no_grad():
        trajectories, _ = model.dual_trajectories(beam.to(device), plan_feature.to(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    latency_ms = 1000.0 * (time.perf_counter() - start)
    candidates = trajectories[0].float().cpu().numpy()
    return DualPlan(stamp_ns, int(command), candidates, candidates[int(command)], latency_ms)


class LatestFrameWorker(Generic[Item, Result]):
    """Runs ``work(item)`` on one thread for the newest submitted item and hands the result to ``deliver``.

    Args:
        work: the computation; any exception is logged and counted (``failed``), never kills the thread.
        deliver: called on the worker thread with each result (e.g. a ROS publish).
        name: the thread's name.
    Counters (read any time): ``submitted``, ``done``, ``replaced`` (overwritten before they started),
    ``failed``; ``last_error`` is the latest failure's text.
    """

    def __init__(self, work: Callable[[Item], Result], deliver: Callable[[Result], None], name: str) -> None:
        self._work = work
        self._deliver = deliver
        self._cond = threading.Condition()
        self._pending: Item | None = None
        self._has_pending = False
        self._closing = False
        self.submitted = self.done = self.replaced = self.failed = 0
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> None:
        """Queue ``item`` for the next run, replacing a waiting one; never blocks on the work itself."""
        with self._cond:
            if self._closing:
                return
            if self._has_pending:
                self.replaced += 1
            self._pending, self._has_pending = item, True
            self.submitted += 1
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._has_pending or self._closing)
                if self._closing:
                    return
                item, self._pending, self._has_pending = self._pending, None, False
            try:
                result = self._work(item)  # type: ignore[arg-type]
                self._deliver(result)
            except Exception as exc:  # noqa: BLE001 - a bad frame or a model failure must not stop the worker
                with self._cond:
                    self.failed += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: %s", self._thread.name, self.last_error)
                continue
            with self._cond:
                self.done += 1

    def close(self, timeout: float = 30.0) -> None:
        """Drop a waiting item and stop after the running one (if any)."""
        with self._cond:
            self._closing = True
            self._pending, self._has_pending = None, False
            self._cond.notify()
        self._thread.join(timeout)


__all__ = ["DualPlan", "LatestFrameWorker", "plan_dual", "plan_feature_from_flat"]
