"""dima_ros.converters.beam_tokens on real dima/msg/BeamTokens messages, without DDS: the planner's to_msg and the
MLLM node's from_msg round trip, and the refusals (messages as the MLLM node reports them)."""

from __future__ import annotations

import numpy as np
import pytest

from ros_helpers.testing import require_ros


@pytest.fixture(scope="module", autouse=True)
def _ros_available() -> None:
    require_ros()


def _frame(with_feature: bool = True, channels: int = 8):
    from dima_ros.converters.beam_tokens import BeamFrame

    rng = np.random.default_rng(3)
    tokens = {
        "bev": rng.normal(size=(12, channels)),
        "ego": rng.normal(size=(1, channels)),
        "agents": rng.normal(size=(5, channels)),
        "map": rng.normal(size=(4, channels)),
    }
    feature = rng.normal(size=(1, 6)).astype(np.float32) if with_feature else None
    return BeamFrame(
        stamp_ns=1_533_151_603_000_000_007,
        frame_id="base_link",
        tokens={n: a.astype(np.float32) for n, a in tokens.items()},
        plan_feature=feature,
        ego_status=np.array([4.0, 0.5, -0.25, 0.1], np.float32),
        command=2,
    )


def test_to_msg_layout() -> None:
    from dima.msg import BeamTokens
    from dima_ros.converters.beam_tokens import to_msg

    frame = _frame()
    msg = to_msg(frame)
    assert isinstance(msg, BeamTokens)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1_533_151_603, 7, "base_link")
    assert list(msg.bev_shape) == [12, 8] and len(msg.bev) == 96
    assert list(msg.agents_shape) == [5, 8] and list(msg.plan_feature_shape) == [1, 6]
    np.testing.assert_array_equal(np.asarray(msg.map, np.float32).reshape(4, 8), frame.tokens["map"])  # row-major
    assert msg.command == 2 and np.allclose(msg.ego_status, [4.0, 0.5, -0.25, 0.1])
    bare = to_msg(_frame(with_feature=False))
    assert len(bare.plan_feature) == 0 and len(bare.plan_feature_shape) == 0


def test_round_trip_to_the_teachers_tensors() -> None:
    import torch

    from dima_core.models.beam import BeamTokens as SceneTokens
    from dima_ros.converters.beam_tokens import ReceivedBeamTokens, from_msg, to_msg

    frame = _frame()
    got = from_msg(to_msg(frame))
    assert isinstance(got, ReceivedBeamTokens) and isinstance(got.scene, SceneTokens)
    assert (got.stamp_ns, got.frame_id, got.command) == (frame.stamp_ns, "base_link", 2)
    for name in ("bev", "ego", "agents", "map"):
        tensor = getattr(got.scene, name)
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (1, *frame.tokens[name].shape)
        np.testing.assert_array_equal(tensor[0].numpy(), frame.tokens[name])
    assert got.plan_feature_error == "" and tuple(got.plan_feature.shape) == (1, 6)
    np.testing.assert_array_equal(got.plan_feature.numpy(), frame.plan_feature)
    assert got.ego_status.dtype == np.float32 and got.ego_status.shape == (4,)


def test_missing_plan_feature_keeps_the_tokens() -> None:
    from dima_ros.converters.beam_tokens import from_msg, to_msg

    got = from_msg(to_msg(_frame(with_feature=False)))
    assert got.scene.bev.shape[1] == 12  # questions still work
    assert got.plan_feature is None
    assert got.plan_feature_error.startswith("BeamTokens.plan_feature is empty")
    msg = to_msg(_frame())
    msg.plan_feature_shape = [2, 3]
    got = from_msg(msg)
    assert got.plan_feature is None and "shape [2, 3] does not fit 6 values" in got.plan_feature_error


def test_malformed_tokens_are_refused() -> None:
    from dima_ros.converters.beam_tokens import from_msg, to_msg

    msg = to_msg(_frame())
    msg.agents_shape = [6, 8]
    with pytest.raises(ValueError, match=r"BeamTokens.agents: shape \[6, 8\] does not fit 40 values"):
        from_msg(msg)
    msg = to_msg(_frame())
    msg.map_shape = [8, 4]  # fits the 32 values, but 4 channels where the others have 8
    with pytest.raises(ValueError, match="token sets have different widths"):
        from_msg(msg)


def test_to_msg_refuses_what_from_msg_would() -> None:
    from dima_ros.converters.beam_tokens import to_msg

    frame = _frame()
    frame.tokens = {**frame.tokens, "map": np.zeros((4, 5), np.float32)}
    with pytest.raises(ValueError, match="different widths"):
        to_msg(frame)
    frame = _frame()
    frame.tokens = {n: a for n, a in frame.tokens.items() if n != "ego"}
    with pytest.raises(ValueError, match=r"token sets \['ego'\] missing"):
        to_msg(frame)
    frame = _frame()
    frame.tokens = {**frame.tokens, "bev": np.zeros((1, 12, 8), np.float32)}  # still batched
    with pytest.raises(ValueError, match="must be \\(tokens, channels\\)"):
        to_msg(frame)
    frame = _frame()
    frame.plan_feature = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match=r"plan_feature must be \(1, channels\)"):
        to_msg(frame)
    frame = _frame()
    frame.ego_status = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="ego_status: 3 values, expected 4"):
        to_msg(frame)
