"""The MLLM node (dima_ros/mllm_node.py) over real rclpy and DDS: AskScene answers on published BEAM tokens,
refuses with a clear error before any tokens and for over-long questions, and answers concurrent callers in order
without dropping any; its parameters are declared from MllmNodeConfig."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mllm_node_helpers import MAX_QUESTION_TOKENS, write_stage2_checkpoint, write_tiny_llm_dir
from ros_helpers.testing import wait_for
from stage2_helpers import MICRO_BEV_TOKENS, MICRO_FEATURE_DIM, MICRO_SCENE_DIM

NS = 1_000_000_000


@pytest.fixture(scope="module")
def stage2_checkpoint(micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mllm_node")
    llm_dir = write_tiny_llm_dir(root / "tiny_llm")
    return write_stage2_checkpoint(root / "stage2.pt", micro_model, llm_dir)


def beam_message(stamp_ns: int, seed: int = 0, plan_feature: bool = False, command: int = 2):
    """A dima/BeamTokens of the micro planner's sizes (what the planner node publishes), with the planner's
    penultimate ego feature when ``plan_feature``."""
    from dima.msg import BeamTokens

    rng = np.random.default_rng(seed)
    msg = BeamTokens()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS)
    msg.header.frame_id = "base_link"
    for name, count in (("bev", MICRO_BEV_TOKENS), ("ego", 1), ("agents", 8), ("map", 4)):
        setattr(msg, f"{name}_shape", [count, MICRO_SCENE_DIM])
        setattr(msg, name, rng.standard_normal(count * MICRO_SCENE_DIM).astype(np.float32).tolist())
    if plan_feature:
        msg.plan_feature_shape = [1, MICRO_FEATURE_DIM]
        msg.plan_feature = rng.standard_normal(MICRO_FEATURE_DIM).astype(np.float32).tolist()
    msg.ego_status = [5.0, 0.0, 0.0, 0.0]
    msg.command = command
    return msg


def call(client, node_spinning_elsewhere, question: str, stamp_ns: int = 0, timeout: float = 60.0):
    from dima.srv import AskScene

    request = AskScene.Request(question=question)
    request.stamp.sec, request.stamp.nanosec = divmod(stamp_ns, NS)
    future = client.call_async(request)
    assert wait_for(future.done, timeout), f"no answer to {question!r} within {timeout} s"
    return future.result()


@pytest.mark.ros
@pytest.mark.integration
def test_ask_scene_service(stage2_checkpoint: Path, ros_node, spin_in_background, single_thread) -> None:
    from rclpy.parameter import Parameter

    from dima.msg import BeamTokens
    from dima.srv import AskScene
    from dima_ros.mllm_node import MllmNode

    node = MllmNode(
        "dima_mllm_test",
        parameter_overrides=[
            Parameter("checkpoint", value=str(stage2_checkpoint)),
            Parameter("device", value="cpu"),
            Parameter("max_new_tokens", value=4),
            Parameter("queue_size", value=4),
            Parameter("timeout_s", value=60.0),
            Parameter("max_question_chars", value=400),
        ],
    )
    try:
        client_node = ros_node("ask_client")
        publisher = client_node.create_publisher(BeamTokens, "/dima_mllm_test/input/beam_tokens", 10)
        client = client_node.create_client(AskScene, "/dima_mllm_test/ask")
        spin_in_background(node, client_node, num_threads=6)  # the queue's waiters + subscriptions
        assert client.wait_for_service(timeout_sec=20.0)

        # No tokens yet: a clear refusal, not a hang or an empty answer.
        first = call(client, None, "What should the ego vehicle do?")
        assert not first.success and "no BEAM tokens received yet" in first.error

        stamps = [1_700_000_000 * NS + k * 500_000_000 for k in range(3)]
        for k, stamp in enumerate(stamps):
            publisher.publish(beam_message(stamp, seed=k))
        assert wait_for(lambda: len(node._tokens) == 3, 10.0)

        answer = call(client, None, "What should the ego vehicle do?")
        assert answer.success, answer.error
        assert answer.error == "" and answer.latency_ms > 0.0

        on_stamp = call(client, None, "Is there a pedestrian?", stamp_ns=stamps[0])
        assert on_stamp.success, on_stamp.error
        missing = call(client, None, "Is there a pedestrian?", stamp_ns=stamps[0] + 1)
        assert not missing.success and "are buffered" in missing.error

        # Too long, in tokens (the checkpoint's joint.max_question_tokens) and in characters (parameter).
        too_many_tokens = call(client, None, " ".join(["car"] * (MAX_QUESTION_TOKENS + 5)))
        assert not too_many_tokens.success and f"at most {MAX_QUESTION_TOKENS} are allowed" in too_many_tokens.error
        too_many_chars = call(client, None, "x" * 401)
        assert not too_many_chars.success and "max_question_chars" in too_many_chars.error
        empty = call(client, None, "   ")
        assert not empty.success and "empty" in empty.error

        # Concurrent callers: all queued (FIFO, one worker), all answered.
        before = node._worker.answered
        futures = [client.call_async(AskScene.Request(question=f"Question number {i}?")) for i in range(4)]
        assert wait_for(lambda: all(f.done() for f in futures), 60.0)
        results = [f.result() for f in futures]
        assert all(r.success for r in results), [r.error for r in results]
        assert node._worker.answered == before + 4

        # A timeout shorter than a generation is reported as such.
        node.set_parameters([Parameter("timeout_s", value=0.1), Parameter("max_new_tokens", value=4000)])
        slow = call(client, None, "Describe everything.")
        assert not slow.success and "timed out" in slow.error
        # The timed-out generation stopped at its deadline: the worker is free again at once.
        node.set_parameters([Parameter("timeout_s", value=30.0), Parameter("max_new_tokens", value=4)])
        started = time.monotonic()
        after = call(client, None, "And now?")
        assert after.success, after.error
        assert time.monotonic() - started < 10.0
        # Read-only and out-of-range parameters are refused by ROS / the typed config.
        assert not node.set_parameters([Parameter("queue_size", value=2)])[0].successful
        assert not node.set_parameters([Parameter("max_new_tokens", value=0)])[0].successful
        time.sleep(0.1)
    finally:
        node.destroy_node()


@pytest.mark.ros
@pytest.mark.integration
def test_mllm_node_requires_a_checkpoint(rclpy_init) -> None:
    from dima_ros.mllm_node import MllmNode

    with pytest.raises(ValueError, match="'checkpoint'"):
        MllmNode("dima_mllm_no_ckpt")


@pytest.mark.ros
@pytest.mark.integration
def test_mllm_node_publishes_the_dual_trajectory(stage2_checkpoint: Path, ros_node, spin_in_background) -> None:
    """publish_dual_trajectory: each BeamTokens frame with a plan_feature gets a DiMA-Dual Trajectory (+ Path) with
    the frame's stamp and command, equal to planning the same message in-process; frames without a feature or with
    an impossible command are skipped with a reason, and the node keeps answering questions."""
    from nav_msgs.msg import Path as PathMsg
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from dima.msg import BeamTokens, Trajectory
    from dima.srv import AskScene
    from dima_core.runtime.dual_planner import plan_dual, plan_feature_from_flat
    from dima_core.runtime.mllm_service import SCENE_TOKEN_FIELDS, scene_tokens_from_flat
    from dima_ros.mllm_node import MllmNode

    node = MllmNode(
        "dima_mllm_dual",
        parameter_overrides=[
            Parameter("checkpoint", value=str(stage2_checkpoint)),
            Parameter("device", value="cpu"),
            Parameter("max_new_tokens", value=4),
            Parameter("publish_dual_trajectory", value=True),
        ],
    )
    try:
        client_node = ros_node("dual_client")
        publisher = client_node.create_publisher(BeamTokens, "/dima_mllm_dual/input/beam_tokens", 10)
        got: list = []
        paths: list = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        client_node.create_subscription(Trajectory, "/dima_mllm_dual/output/dual_trajectory", got.append, qos)
        client_node.create_subscription(PathMsg, "/dima_mllm_dual/output/dual_path", paths.append, qos)
        client = client_node.create_client(AskScene, "/dima_mllm_dual/ask")
        spin_in_background(node, client_node, num_threads=4)
        assert wait_for(lambda: publisher.get_subscription_count() == 1, 10.0)

        stamp = 1_700_000_000 * NS + 250_000_000
        sent = beam_message(stamp, seed=3, plan_feature=True, command=1)
        publisher.publish(sent)
        assert wait_for(lambda: len(got) == 1 and len(paths) == 1, 30.0), node.dual_summary()
        traj = got[0]
        assert traj.mode == Trajectory.MODE_DUAL and traj.command == 1
        assert (traj.header.stamp.sec, traj.header.stamp.nanosec) == divmod(stamp, NS)
        assert traj.header.frame_id == "base_link" and paths[0].header.stamp == traj.header.stamp
        assert (traj.num_candidate_modes, traj.num_candidate_points) == (3, 6) and len(traj.points) == 6
        assert traj.processing_time_ms > 0

        beam = scene_tokens_from_flat(
            {n: getattr(sent, n) for n in SCENE_TOKEN_FIELDS},
            {n: getattr(sent, f"{n}_shape") for n in SCENE_TOKEN_FIELDS},
        )
        expected = plan_dual(
            node._model, beam, plan_feature_from_flat(sent.plan_feature, sent.plan_feature_shape), 1, stamp
        )
        positions = np.array([[p.pose.position.x, p.pose.position.y] for p in traj.points])
        np.testing.assert_allclose(positions, expected.trajectory, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(traj.candidate_positions).reshape(3, 6, 2), expected.trajectories, atol=1e-5
        )
        assert not np.allclose(expected.trajectories[0], expected.trajectories[1]), "commands give different plans"

        # No plan_feature (a planner exported without BEAM outputs) and an impossible command: no trajectory.
        publisher.publish(beam_message(stamp + NS, seed=4))
        assert wait_for(lambda: node.dual_skipped == 1, 10.0)
        publisher.publish(beam_message(stamp + 2 * NS, seed=5, plan_feature=True, command=9))
        assert wait_for(lambda: node._dual.failed == 1, 30.0)
        assert "command 9 is not one of the planner's 3 commands" in node._dual.last_error
        assert "1 without plan_feature, 1 failed" in node.dual_summary()

        # Still planning, and questions are still answered (the model is shared under a lock).
        publisher.publish(beam_message(stamp + 3 * NS, seed=6, plan_feature=True))
        assert wait_for(lambda: len(got) == 2, 30.0)
        assert got[1].command == 2
        answer = call(client, None, "What should the ego vehicle do?")
        assert answer.success, answer.error
    finally:
        node.destroy_node()
