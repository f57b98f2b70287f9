"""Test-side helpers for ROS 2 tests (used by test/conftest.py fixtures and the tests themselves).

Importable from tests as ``from ros_helpers.testing import wait_for, require_ros, ...`` (pytest puts test/ on sys.path).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROS_HELPERS_DIR = Path(__file__).resolve().parent
TEST_DIR = ROS_HELPERS_DIR.parent
REPO_ROOT = TEST_DIR.parent

_ROS_HINT = (
    "rclpy or the colcon-built dima interfaces are not importable: run the tests with `make test`, or "
    "`make setup && source tools/env.sh && pytest`"
)


def require_ros() -> None:
    """Fail (in CI) or skip (locally) with a clear hint when rclpy / dima.msg / dima.srv do not import."""
    try:
        import rclpy  # noqa: F401

        import dima.msg  # noqa: F401
        import dima.srv  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{_ROS_HINT} ({exc})", pytrace=False)
        pytest.skip(f"{_ROS_HINT} ({exc})")


class BackgroundSpinner:
    """A MultiThreadedExecutor spinning on a daemon thread; stopped and joined by ``close()``."""

    def __init__(self, *nodes, num_threads: int = 2) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=num_threads)
        for node in nodes:
            self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ros-spin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down under us; nothing left to spin
                if self._stop.is_set():
                    break
                raise

    def add_node(self, node) -> None:
        self.executor.add_node(node)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=1.0)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class RosSubprocess:
    """A helper script from ``test/ros_helpers`` run in its own Python process (same env, same ROS_DOMAIN_ID).

    stdout/stderr go to files (no pipe can fill up and block it); ``output()`` returns both for assertion messages.
    """

    def __init__(self, script: str, args: list[str], log_dir: Path) -> None:
        self.script = script
        stem = Path(script).stem
        self.stdout_path = log_dir / f"{stem}.{os.getpid()}.{time.monotonic_ns()}.out"
        self.stderr_path = self.stdout_path.with_suffix(".err")
        self._stdout = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(ROS_HELPERS_DIR / script), *args],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            env=os.environ.copy(),
            start_new_session=True,  # its own process group: stop() kills it and anything it spawned
        )

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        for f in (self._stdout, self._stderr):
            if not f.closed:
                f.flush()
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- {self.script} (rc={self.proc.returncode}) stdout:\n{out}\n--- stderr:\n{err}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGINT, 3.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                if self.wait(grace) is not None:
                    break
        for f in (self._stdout, self._stderr):
            if not f.closed:
                f.close()
