"""The MLLM node's work, without rclpy: a bounded buffer of BEAM token frames and a FIFO question queue served by
one worker thread that runs the teacher (:func:`dima_core.models.dima.answer_question`).

Why a worker thread: generation takes from tens of milliseconds (tiny models) to seconds (7B), and the ROS executor
must keep receiving token frames meanwhile. Why one: the teacher is one model on one device; answering two questions
at once would only make both slower. Requests are served strictly in arrival order; at most ``queue_size`` may wait
or run at once, more are refused at once ("busy") instead of piling up without bound.

A request that exceeds its timeout is answered with an error; if it had not started yet it is removed from the
queue, and if it is generating, generation stops after the current token (``answer`` receives a ``should_stop``
callback polled per token), so a timed-out question does not keep the device busy. :meth:`QuestionWorker.close`
stops a running generation the same way.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only: torch and the models are imported inside the functions that use them
    from dima_core.models.beam import BeamTokens

log = logging.getLogger(__name__)

# Index of each BEAM token set in the dima/msg/BeamTokens message: (flat array field, shape field).
SCENE_TOKEN_FIELDS: tuple[str, ...] = ("bev", "ego", "agents", "map")


@dataclass
class AskResult:
    """What the AskScene service returns: ``answer`` when ``success``, otherwise a human-readable ``error``."""

    success: bool
    answer: str = ""
    error: str = ""
    latency_ms: float = 0.0
    stamp_ns: int = 0  # the stamp of the token frame the answer is grounded on (0 when none)


def scene_tokens_from_flat(arrays: dict[str, Sequence[float]], shapes: dict[str, Sequence[int]]) -> BeamTokens:
    """A one-sample :class:`~dima_core.models.beam.BeamTokens` from the flat arrays of a dima/msg/BeamTokens.

    Args:
        arrays: ``{"bev", "ego", "agents", "map"} -> flat float32 values`` (row-major).
        shapes: the same keys -> 2-d shape ``(tokens, channels)`` as the message stores it.
    The message carries the four token sets only (what the teacher reads), not the decoded scene outputs; those
    fields are zeros of the right rank so the dataclass stays valid.

    Raises:
        ValueError: a shape that does not match its array, or token sets of different widths.
    """
    import torch

    from dima_core.models.beam import BeamTokens

    tokens: dict[str, torch.Tensor] = {}
    for name in SCENE_TOKEN_FIELDS:
        shape = tuple(int(s) for s in shapes[name])
        values = np.asarray(arrays[name], dtype=np.float32)
        if len(shape) != 2 or int(np.prod(shape)) != values.size:
            raise ValueError(f"BeamTokens.{name}: shape {list(shape)} does not fit {values.size} values")
        tokens[name] = torch.from_numpy(values.reshape(shape).copy()).unsqueeze(0)
    widths = {name: int(t.shape[-1]) for name, t in tokens.items()}
    if len(set(widths.values())) != 1:
        raise ValueError(f"BeamTokens: token sets have different widths {widths}")
    na, nm = tokens["agents"].shape[1], tokens["map"].shape[1]
    zeros = torch.zeros
    return BeamTokens(
        bev=tokens["bev"],
        ego=tokens["ego"],
        agents=tokens["agents"],
        map=tokens["map"],
        agent_boxes=zeros(1, na, 7),
        agent_logits=zeros(1, na, 1),
        agent_velocities=zeros(1, na, 2),
        agent_trajectories=zeros(1, na, 1, 1, 2),
        agent_mode_logits=zeros(1, na, 1),
        map_polylines=zeros(1, nm, 1, 2),
        map_logits=zeros(1, nm, 1),
    )


class TokenBuffer:
    """The last ``capacity`` BEAM token frames by stamp (nanoseconds); thread-safe."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def put(self, stamp_ns: int, beam: Any) -> None:
        with self._lock:
            self._frames.pop(stamp_ns, None)
            self._frames[stamp_ns] = beam
            while len(self._frames) > self.capacity:
                self._frames.popitem(last=False)

    def get(self, stamp_ns: int = 0) -> tuple[int, Any]:
        """``(stamp_ns, beam)`` of the latest frame (``stamp_ns`` 0) or of exactly that stamp.

        Raises:
            LookupError: nothing received yet, or that stamp is not (or no longer) buffered.
        """
        with self._lock:
            if not self._frames:
                raise LookupError(
                    "no BEAM tokens received yet (is the planner running and publishing ~/output/beam_tokens?)"
                )
            if stamp_ns == 0:
                latest = next(reversed(self._frames))
                return latest, self._frames[latest]
            if stamp_ns not in self._frames:
                oldest, newest = next(iter(self._frames)), next(reversed(self._frames))
                raise LookupError(
                    f"no BEAM tokens with stamp {stamp_ns} ns are buffered (buffer holds "
                    f"{len(self._frames)} frames, {oldest} .. {newest} ns)"
                )
            return stamp_ns, self._frames[stamp_ns]

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


@dataclass
class _Job:
    question: str
    stamp_ns: int
    future: Future[AskResult]
    deadline: float  # time.monotonic() after which the caller has given up


class QuestionWorker:
    """A FIFO of questions answered one at a time on a worker thread.

    Args:
        answer: ``answer(beam, question, should_stop) -> (answer, latency_ms)``; may raise ValueError for a bad
            question; should end early once ``should_stop()`` is true.
        tokens: where the beams come from.
        queue_size: most requests waiting or running at once.
        check: cheap validation run in the caller's thread (e.g. question length); raises ValueError.
    """

    def __init__(
        self,
        answer: Callable[[Any, str, Callable[[], bool]], tuple[str, float]],
        tokens: TokenBuffer,
        queue_size: int,
        check: Callable[[str], None] | None = None,
    ) -> None:
        self._answer = answer
        self._tokens = tokens
        self._check = check
        self._slots = threading.BoundedSemaphore(queue_size)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self.queue_size = queue_size
        self.answered = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mllm-worker", daemon=True)
        self._thread.start()

    def ask(self, question: str, stamp_ns: int, timeout_s: float) -> AskResult:
        """Answer (blocking the caller up to ``timeout_s``); every failure comes back as ``success=False``."""
        start = time.perf_counter()
        try:
            if self._check is not None:
                self._check(question)
            self._tokens.get(stamp_ns)  # fail fast, before queueing, when there is nothing to ground on
        except (ValueError, LookupError) as exc:
            return AskResult(False, error=str(exc))
        if not self._slots.acquire(blocking=False):
            return AskResult(
                False,
                error=f"busy: {self.queue_size} requests are already queued or running; "
                "retry later (or raise the queue_size parameter)",
            )
        job = _Job(question, stamp_ns, Future(), time.monotonic() + timeout_s)
        job.future.add_done_callback(lambda _f: self._slots.release())
        self._queue.put(job)
        try:
            result = job.future.result(timeout=timeout_s)
        except TimeoutError:
            started = not job.future.cancel()  # cancel() fails once the worker has started the job
            return AskResult(
                False,
                error=(
                    f"timed out after {timeout_s:.1f} s ("
                    + (
                        "generation stopped at the deadline"
                        if started
                        else "still waiting in the queue behind earlier questions"
                    )
                    + "); raise the timeout_s parameter or lower max_new_tokens"
                ),
                latency_ms=1000.0 * (time.perf_counter() - start),
            )
        return result

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue  # timed out while queued: its caller has already been answered
            try:
                stamp, beam = self._tokens.get(job.stamp_ns)
                answer, latency_ms = self._answer(beam, job.question, partial(self._should_stop, job.deadline))
                if time.monotonic() > job.deadline or self._closing.is_set():
                    result = AskResult(False, error="generation was stopped (timed out or shutting down)")
                else:
                    result = AskResult(True, answer=answer, latency_ms=latency_ms, stamp_ns=stamp)
                    self.answered += 1
            except (ValueError, LookupError) as exc:
                result = AskResult(False, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a model failure must answer the caller, not kill the worker
                log.exception("answering %r failed", job.question)
                result = AskResult(False, error=f"the model failed: {type(exc).__name__}: {exc}")
            job.future.set_result(result)

    def _should_stop(self, deadline: float) -> bool:
        """The generation's stop callback: the service is closing, or the job's ``deadline`` (monotonic) passed."""
        return self._closing.is_set() or time.monotonic() > deadline

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker: queued jobs are cancelled, a running generation stops after its current token."""
        self._closing.set()
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is not None:
                pending.future.cancel()
        self._queue.put(None)
        self._thread.join(timeout)


__all__ = ["AskResult", "QuestionWorker", "SCENE_TOKEN_FIELDS", "TokenBuffer", "scene_tokens_from_flat"]
