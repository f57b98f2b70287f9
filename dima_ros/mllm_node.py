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

The dual-mode trajectory is not published: DiMA-Dual needs the planner's penultimate ego feature, which
dima/msg/BeamTokens does not carry, so it could only be computed by re-running the cameras here.
Parameters: :class:`dima_core.runtime.mllm_node_config.MllmNodeConfig` (``config/mllm_node.yaml``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Optional, Sequence

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from dima.msg import BeamTokens as BeamTokensMsg
from dima.srv import AskScene
from dima_core.runtime.mllm_node_config import MllmNodeConfig
from dima_core.runtime.mllm_service import SCENE_TOKEN_FIELDS, QuestionWorker, TokenBuffer, scene_tokens_from_flat
from dima_ros.node_main import run_node
from dima_ros.parameters import ConfigParameters

NODE_NAME = "dima_mllm"
NS_PER_S = 1_000_000_000

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

    def __init__(self, node_name: str = NODE_NAME, *, parameter_overrides: Optional[list[Any]] = None,
                 **node_kwargs: Any) -> None:
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
        self._tokens = TokenBuffer(cfg.token_buffer_size)
        self._worker = QuestionWorker(self._answer, self._tokens, cfg.queue_size, check=self._check_question)
        self._token_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self.create_subscription(BeamTokensMsg, "~/input/beam_tokens", self._on_tokens,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
                                 callback_group=self._token_group)
        self.create_service(AskScene, "~/ask", self._on_ask, callback_group=self._service_group)
        self.get_logger().info(
            f"ready: teacher of {self._loaded.checkpoint} (step {self._loaded.step}) on {self._device}; "
            f"questions up to {self._max_tokens} tokens, timeout {cfg.timeout_s:.1f} s, queue {cfg.queue_size}")

    # ---------------------------------------------------------------------------------------------------- model
    def _load_model(self, cfg: MllmNodeConfig) -> None:
        import torch

        from dima_core.models.dima import DEFAULT_MAX_QUESTION_TOKENS, load_dima

        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        self._loaded = load_dima(cfg.checkpoint, mode="mllm", map_location="cpu")
        self._model = self._loaded.model.to(torch.device(self._device))
        joint = self._loaded.train_config.get("joint") or {}
        self._max_tokens = cfg.max_question_tokens or int(joint.get("max_question_tokens",
                                                                    DEFAULT_MAX_QUESTION_TOKENS))

    @property
    def config(self) -> MllmNodeConfig:
        return self._params.config

    def _check_question(self, question: str) -> None:
        """Cheap checks in the caller's thread, so a bad question never waits in the queue."""
        from dima_core.models.dima import check_question

        limit = self.config.max_question_chars
        if len(question) > limit:
            raise ValueError(f"the question has {len(question)} characters; at most {limit} are allowed "
                             "(parameter max_question_chars)")
        check_question(self._model.teacher.tokenizer, question, self._max_tokens)

    def _answer(self, beam: Any, question: str, should_stop: Callable[[], bool]) -> tuple[str, float]:
        from dima_core.models.dima import answer_question

        return answer_question(self._model, beam.to(self._device), question, self.config.max_new_tokens,
                               self._max_tokens, should_stop=should_stop)

    # ---------------------------------------------------------------------------------------------------- ROS
    def _on_tokens(self, msg: BeamTokensMsg) -> None:
        try:
            beam = scene_tokens_from_flat({n: getattr(msg, n) for n in SCENE_TOKEN_FIELDS},
                                          {n: getattr(msg, f"{n}_shape") for n in SCENE_TOKEN_FIELDS})
        except ValueError as exc:
            self.get_logger().warning(f"ignoring malformed BeamTokens: {exc}", throttle_duration_sec=5.0)
            return
        self._tokens.put(msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec, beam)

    def _on_ask(self, request: AskScene.Request, response: AskScene.Response) -> AskScene.Response:
        stamp_ns = request.stamp.sec * NS_PER_S + request.stamp.nanosec
        result = self._worker.ask(request.question, stamp_ns, self.config.timeout_s)
        response.success = result.success
        response.answer = result.answer
        response.error = result.error
        response.latency_ms = float(result.latency_ms)
        if not result.success:
            self.get_logger().warning(f"ask failed: {result.error}")
        return response

    def destroy_node(self) -> None:
        worker = getattr(self, "_worker", None)  # absent when the constructor failed
        if worker is not None:
            worker.close()
        super().destroy_node()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the node alone on a MultiThreadedExecutor (threads: the queue's waiters + token subscription)."""
    from rclpy.executors import MultiThreadedExecutor

    return run_node("mllm_node", MllmNode,
                    lambda node: MultiThreadedExecutor(num_threads=node.config.queue_size + 2), argv)

if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MllmNode", "NODE_NAME", "main", "resolve_device"]
