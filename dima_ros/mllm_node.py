"""``MllmNode``: the DiMA MLLM teacher behind the ``~/ask`` service (dima/srv/AskScene).

    python -m dima_ros.mllm_node --ros-args --params-file config/mllm_node.yaml -p checkpoint:=runs/stage2
    dima ros bringup --config config/bringup.yaml --with-mllm        # with the planner, in one process

- ``~/input/beam_tokens`` (dima/msg/BeamTokens, reliable, depth 10): the planner's scene encoding. The last
  ``token_buffer_size`` frames are kept by stamp; a question with a zero stamp is answered on the latest frame, one
  with a stamp on exactly that frame (or fails, naming the buffered range).
- ``~/ask`` (dima/srv/AskScene): the question goes through a bounded FIFO served by one worker thread
  (:class:`dima_core.runtime.mllm_service.QuestionWorker`) running
  :func:`dima_core.models.dima.answer_question`. The service lives in its own reentrant callback group, so under a
  MultiThreadedExecutor several callers wait in parallel while the token subscription keeps being served.
  Every failure is ``success=false`` with a readable ``error``: no tokens yet, question too long or empty, queue
  full, timeout, model error.

- ``~/output/dual_trajectory`` (dima/msg/Trajectory, mode ``dual``) and ``~/output/dual_path`` (nav_msgs/Path),
  with ``publish_dual_trajectory: true``: DiMA-Dual planned from each BeamTokens frame's tokens and ``plan_feature``
  (the planner's penultimate ego feature), no cameras needed; stamped with the frame's stamp, selected by its
  command, all commands' candidates included. A worker thread plans the newest frame only
  (:class:`dima_core.runtime.dual_planner.LatestFrameWorker`): frames arriving while one is planned replace the one
  waiting, so the published plan lags by at most one planning time. Questions and dual planning share the model
  under one lock (one device, one model).
Parameters: :class:`dima_core.runtime.mllm_node_config.MllmNodeConfig` (``config/mllm_node.yaml``).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from nav_msgs.msg import Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from dima.msg import BeamTokens as BeamTokensMsg
from dima.msg import Trajectory
from dima.srv import AskScene
from dima_core.runtime.dual_planner import DualPlan, LatestFrameWorker, plan_dual
from dima_core.runtime.mllm_node_config import MllmNodeConfig
from dima_core.runtime.mllm_service import QuestionWorker, TokenBuffer
from dima_ros.converters import beam_tokens
from dima_ros.converters.stamps import ns_to_stamp, stamp_to_ns
from dima_ros.converters.trajectory import trajectory_messages
from dima_ros.node_main import run_node
from dima_ros.parameters import ConfigParameters

NODE_NAME = "dima_mllm"
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error, not a fallback."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    return device


class MllmNode(Node):
    """The AskScene server. ``config`` overrides the declared parameters (bringup and tests pass it directly)."""

    def __init__(
        self, node_name: str = NODE_NAME, *, parameter_overrides: list[Any] | None = None, **node_kwargs: Any
    ) -> None:
        super().__init__(node_name, parameter_overrides=parameter_overrides, **node_kwargs)
        # Parameters that change the loaded model are read once; the rest are re-read on each request.
        self._params = ConfigParameters(self, MllmNodeConfig)
        cfg: MllmNodeConfig = self._params.config
        if not cfg.checkpoint:
            name = self.get_fully_qualified_name()
            super().destroy_node()  # a node that cannot serve must not stay in the graph
            raise ValueError(f"{name}: parameter 'checkpoint' (a stage-2 checkpoint) is required")
        self._device = resolve_device(cfg.device)
        self._load_model(cfg)
        self._model_lock = threading.Lock()  # questions and dual planning take turns on the one model
        self._tokens = TokenBuffer(cfg.token_buffer_size)
        self._worker = QuestionWorker(self._answer, self._tokens, cfg.queue_size, check=self._check_question)
        self._dual: LatestFrameWorker | None = None
        self.dual_skipped = 0  # frames without a usable plan_feature
        if cfg.publish_dual_trajectory:
            self.pub_dual = self.create_publisher(Trajectory, "~/output/dual_trajectory", OUTPUT_QOS)
            self.pub_dual_path = self.create_publisher(Path, "~/output/dual_path", OUTPUT_QOS)
            self._dual = LatestFrameWorker(self._plan_dual, self._publish_dual, name="mllm-dual")
        self._token_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self.create_subscription(
            BeamTokensMsg,
            "~/input/beam_tokens",
            self._on_tokens,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
            callback_group=self._token_group,
        )
        self.create_service(AskScene, "~/ask", self._on_ask, callback_group=self._service_group)
        self.get_logger().info(
            f"ready: teacher of {self._loaded.checkpoint} (step {self._loaded.step}) on {self._device}; "
            f"questions up to {self._max_tokens} tokens, timeout {cfg.timeout_s:.1f} s, queue {cfg.queue_size}"
        )

    # ---------------------------------------------------------------------------------------------------- model
    def _load_model(self, cfg: MllmNodeConfig) -> None:
        import torch

        from dima_core.models.dima import DEFAULT_MAX_QUESTION_TOKENS, load_dima

        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self._loaded = load_dima(cfg.checkpoint, mode="mllm", map_location="cpu")
        self._model = self._loaded.model.to(torch.device(self._device))
        joint = self._loaded.train_config.get("joint") or {}
        self._max_tokens = cfg.max_question_tokens or int(joint.get("max_question_tokens", DEFAULT_MAX_QUESTION_TOKENS))

    @property
    def config(self) -> MllmNodeConfig:
        return self._params.config

    def _check_question(self, question: str) -> None:
        """Cheap checks in the caller's thread, so a bad question never waits in the queue."""
        from dima_core.models.dima import check_question

        limit = self.config.max_question_chars
        if len(question) > limit:
            raise ValueError(
                f"the question has {len(question)} characters; at most {limit} are allowed "
                "(parameter max_question_chars)"
            )
        check_question(self._model.teacher.tokenizer, question, self._max_tokens)

    def _answer(self, beam: Any, question: str, should_stop: Callable[[], bool]) -> tuple[str, float]:
        from dima_core.models.dima import answer_question

        with self._model_lock:
            return answer_question(
                self._model,
                beam.to(self._device),
                question,
                self.config.max_new_tokens,
                self._max_tokens,
                should_stop=should_stop,
            )

    def _plan_dual(self, frame: tuple[int, str, Any, Any, int]) -> tuple[str, DualPlan]:
        stamp_ns, frame_id, beam, feature, command = frame
        with self._model_lock:
            return frame_id, plan_dual(self._model, beam, feature, command, stamp_ns)

    def _publish_dual(self, result: tuple[str, DualPlan]) -> None:
        frame_id, plan = result
        traj, path = trajectory_messages(
            ns_to_stamp(plan.stamp_ns),
            frame_id,
            plan.command,
            Trajectory.MODE_DUAL,
            plan.trajectory,
            plan.trajectories,
            plan.latency_ms,
        )
        self.pub_dual.publish(traj)
        self.pub_dual_path.publish(path)

    # ---------------------------------------------------------------------------------------------------- ROS
    def _on_tokens(self, msg: BeamTokensMsg) -> None:
        try:
            frame = beam_tokens.from_msg(msg)
        except ValueError as exc:
            self.get_logger().warning(f"ignoring malformed BeamTokens: {exc}", throttle_duration_sec=5.0)
            return
        self._tokens.put(frame.stamp_ns, frame.scene)
        if self._dual is not None:
            if frame.plan_feature is None:
                self.dual_skipped += 1
                self.get_logger().warning(
                    f"no dual trajectory for frame {frame.stamp_ns}: {frame.plan_feature_error}",
                    throttle_duration_sec=5.0,
                )
                return
            self._dual.submit((frame.stamp_ns, frame.frame_id, frame.scene, frame.plan_feature, frame.command))

    def _on_ask(self, request: AskScene.Request, response: AskScene.Response) -> AskScene.Response:
        result = self._worker.ask(request.question, stamp_to_ns(request.stamp), self.config.timeout_s)
        response.success = result.success
        response.answer = result.answer
        response.error = result.error
        response.latency_ms = float(result.latency_ms)
        if not result.success:
            self.get_logger().warning(f"ask failed: {result.error}")
        return response

    def dual_summary(self) -> str:
        """Counters of the dual planning, for logs and the bringup summary."""
        dual = self._dual
        if dual is None:
            return "dual trajectory off"
        text = (
            f"{dual.done} dual plans published, {dual.replaced} frames replaced by newer ones, "
            f"{self.dual_skipped} without plan_feature, {dual.failed} failed"
        )
        return text + (f" (last error: {dual.last_error})" if dual.last_error else "")

    def destroy_node(self) -> None:
        for name in ("_worker", "_dual"):  # absent when the constructor failed
            worker = getattr(self, name, None)
            if worker is not None:
                worker.close()
        super().destroy_node()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node alone on a MultiThreadedExecutor (threads: the queue's waiters + token subscription)."""
    from rclpy.executors import MultiThreadedExecutor

    return run_node(
        "mllm_node", MllmNode, lambda node: MultiThreadedExecutor(num_threads=node.config.queue_size + 2), argv
    )


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MllmNode", "NODE_NAME", "main", "resolve_device"]
