"""A loud, repeated log line while something slow (a TensorRT engine build) runs.

An engine build takes minutes and prints nothing by itself: users take the silent node for a hang and kill it,
which is how half-built caches and "rebuilt at every start" reports happen. :class:`BuildHeartbeat` logs a WARNING
when the work starts and again every ``interval`` seconds from a daemon thread, with the elapsed time, until the
``with`` block ends.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType


class BuildHeartbeat:
    """``with BuildHeartbeat("building TensorRT engine x.engine"): build()`` logs progress while ``build`` runs."""

    def __init__(
        self,
        what: str,
        interval: float = 5.0,
        logger: logging.Logger | None = None,
        hint: str = "this can take minutes; do not interrupt",
    ) -> None:
        self.what = what
        self.interval = interval
        self.hint = hint
        self.log = logger or logging.getLogger(__name__)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.log.warning(
                "%s ... still running (%.0f s elapsed; %s)", self.what, time.monotonic() - self._start, self.hint
            )

    def __enter__(self) -> BuildHeartbeat:
        self._start = time.monotonic()
        self.log.warning("%s ... %s", self.what, self.hint)
        self._thread = threading.Thread(target=self._beat, name="build-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        elapsed = time.monotonic() - self._start
        if exc is None:
            self.log.warning("%s ... done in %.1f s", self.what, elapsed)
        else:
            self.log.error("%s ... FAILED after %.1f s (%s)", self.what, elapsed, type(exc).__name__)


__all__ = ["BuildHeartbeat"]
