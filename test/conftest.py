"""Shared pytest configuration and fixtures.

Sections (append yours at the end, under its own header):
  1. ROS isolation   - a private ROS_DOMAIN_ID per pytest process, localhost-only discovery
  2. ROS fixtures    - ``rclpy_init``, ``ros_node``, ``spin_in_background``, ``ros_subprocess``
                       (plain helpers - ``require_ros``, ``wait_for``, ... - live in test/ros_helpers/testing.py)
  3. Markers         - ``gpu`` tests are skipped without CUDA

Run the suite with ``make test`` (or ``source tools/env.sh && pytest``): rclpy and the colcon-built ``dima.msg`` /
``dima.srv`` only import with that environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from ros_helpers.testing import BackgroundSpinner, RosSubprocess, require_ros

# Fixture modules, registered once for the whole session. Test modules must not import fixtures from them (an
# imported session fixture is a new fixture per module, so the synthetic world would be generated once per module);
# they may import plain helper functions and constants.
pytest_plugins = ("data_fixtures", "synth_fixtures", "training_fixtures", "eval_fixtures", "mllm_fixtures")

# ---------------------------------------------------------------------------------------------------------------------
# 1. ROS isolation. Done at import time, before anything can call rclpy.init(), so that this process AND every
#    subprocess it starts (they inherit os.environ) share one private DDS domain: parallel test runs (CI jobs, several
#    engineers on one machine) never see each other's topics. Domain ids 1..100 are valid for Fast DDS on Linux
#    without colliding with the ephemeral port range. DIMA_TEST_ROS_DOMAIN_ID pins it (e.g. to debug with a
#    second shell).
# ---------------------------------------------------------------------------------------------------------------------


def _test_domain_id() -> int:
    pinned = os.environ.get("DIMA_TEST_ROS_DOMAIN_ID")
    if pinned:
        return int(pinned)
    return 1 + os.getpid() % 100


os.environ["ROS_DOMAIN_ID"] = str(_test_domain_id())
# Keep test traffic on this host (Kilted's discovery-range setting; replaces ROS_LOCALHOST_ONLY).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


# ---------------------------------------------------------------------------------------------------------------------
# 2. ROS fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rclpy_init() -> Iterator[None]:
    """``rclpy.init()`` for the module (default context), ``try_shutdown()`` after it.

    If something else already initialised rclpy, reuse that context and leave its shutdown to its owner.
    """
    require_ros()
    import rclpy

    owned = not rclpy.ok()
    if owned:
        rclpy.init()
    try:
        yield
    finally:
        if owned:
            rclpy.try_shutdown()


@pytest.fixture
def ros_node(rclpy_init, request) -> Iterator[Callable[..., object]]:
    """Factory for nodes destroyed at the end of the test: ``node = ros_node("name", **node_kwargs)``."""
    import rclpy

    nodes = []

    def make(name: str | None = None, **kwargs):
        base = name or "test_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
        node = rclpy.create_node(f"{base}_{len(nodes)}", **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in reversed(nodes):
        node.destroy_node()


@pytest.fixture
def spin_in_background(rclpy_init) -> Iterator[Callable[..., BackgroundSpinner]]:
    """``spinner = spin_in_background(node_a, node_b)`` spins them on a thread until the test ends."""
    spinners: list[BackgroundSpinner] = []

    def start(*nodes, num_threads: int = 2) -> BackgroundSpinner:
        spinner = BackgroundSpinner(*nodes, num_threads=num_threads)
        spinners.append(spinner)
        return spinner

    yield start
    for spinner in spinners:
        spinner.close()


@pytest.fixture
def ros_subprocess(tmp_path) -> Iterator[Callable[..., RosSubprocess]]:
    """Start ``test/ros_helpers/<script>`` in another process: ``proc = ros_subprocess("echo_once.py", [...])``.

    Every process started this way is killed (whole process group) when the test ends, pass or fail.
    """
    require_ros()
    procs: list[RosSubprocess] = []

    def start(script: str, args: list[str] | tuple[str, ...] = ()) -> RosSubprocess:
        proc = RosSubprocess(script, list(args), tmp_path)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


# ---------------------------------------------------------------------------------------------------------------------
# 3. Markers (declared in pytest.ini)
# ---------------------------------------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config, items) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)
