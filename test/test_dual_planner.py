"""dima_core.runtime.dual_planner without ROS: the newest-only worker that plans DiMA-Dual in the MLLM node, and
the parsing of dima/msg/BeamTokens ``plan_feature``. (Planning itself against the camera path:
test_stage2_training.py; over DDS: test_mllm_node.py.)"""

from __future__ import annotations

import threading

import pytest

from ros_helpers.testing import wait_for


def test_latest_frame_worker_plans_only_the_newest_waiting_frame() -> None:
    from dima_core.runtime.dual_planner import LatestFrameWorker

    release = threading.Event()
    started: list[int] = []
    delivered: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        release.wait(10.0)
        return item * 10

    worker = LatestFrameWorker(work, delivered.append, name="test-dual")
    try:
        worker.submit(1)
        assert wait_for(lambda: started == [1], 5.0)
        for item in (2, 3, 4):  # arrive while 1 is being planned: only 4 survives
            worker.submit(item)
        release.set()
        assert wait_for(lambda: delivered == [10, 40], 5.0), delivered
        assert started == [1, 4]
        assert (worker.submitted, worker.done, worker.replaced, worker.failed) == (4, 2, 2, 0)
    finally:
        worker.close()


def test_latest_frame_worker_survives_failures_and_close_drops_the_waiting_frame() -> None:
    from dima_core.runtime.dual_planner import LatestFrameWorker

    delivered: list[int] = []
    gate = threading.Event()

    def work(item: int) -> int:
        if item < 0:
            raise ValueError(f"bad frame {item}")
        gate.wait(10.0)
        return item

    worker = LatestFrameWorker(work, delivered.append, name="test-dual")
    worker.submit(-1)
    assert wait_for(lambda: worker.failed == 1, 5.0)
    assert worker.last_error == "ValueError: bad frame -1"
    gate.set()
    worker.submit(5)  # the thread is still serving after the failure
    assert wait_for(lambda: delivered == [5], 5.0)
    gate.clear()
    worker.submit(6)  # blocks in work until the gate opens
    assert wait_for(lambda: worker.submitted == 3 and not worker._has_pending, 5.0)
    worker.submit(7)  # waiting behind 6: dropped by close
    closer = threading.Thread(target=worker.close)
    closer.start()
    gate.set()
    closer.join(10.0)
    assert not closer.is_alive()
    assert delivered == [5, 6]
    worker.submit(8)  # after close: ignored, no thread to run it
    assert worker.submitted == 4


def test_plan_feature_from_flat_checks_the_message_fields() -> None:
    from dima_core.runtime.dual_planner import plan_feature_from_flat

    feature = plan_feature_from_flat([0.5] * 8, [1, 8])
    assert tuple(feature.shape) == (1, 8) and float(feature.sum()) == 4.0
    with pytest.raises(ValueError, match="empty.*ego_feature"):
        plan_feature_from_flat([], [])
    with pytest.raises(ValueError, match=r"shape \[1, 9\] does not fit 8 values"):
        plan_feature_from_flat([0.0] * 8, [1, 9])
    with pytest.raises(ValueError, match="expected \\[1, channels\\]"):
        plan_feature_from_flat([0.0] * 8, [2, 4])
