"""The planner's BEAM scene encoding <-> ``dima/msg/BeamTokens``: :func:`to_msg` on the planner side,
:func:`from_msg` on the MLLM side.

The message stores each token set as a flat row-major float32 array plus its shape. The planner publishes a
:class:`BeamFrame` (numpy, what its backend returns); the MLLM node needs the teacher's
:class:`dima_core.models.beam.BeamTokens` (torch, batch of one) and the (1, C_plan) planning feature, which
:func:`from_msg` builds with the ROS-free checks of ``dima_core.runtime`` (``scene_tokens_from_flat``,
``plan_feature_from_flat``; training's tests feed those the same flat layout), so the refusal messages are the ones
the MLLM node reports. A message whose token sets are malformed is refused as a whole; one whose planning feature is
missing or malformed still carries usable tokens (questions work, DiMA-Dual does not), so that is a field of the
result, not an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dima.msg import BeamTokens
from dima_core.runtime.dual_planner import plan_feature_from_flat
from dima_core.runtime.mllm_service import SCENE_TOKEN_FIELDS, scene_tokens_from_flat
from dima_ros.converters.stamps import ns_to_stamp, stamp_to_ns


@dataclass
class BeamFrame:
    """One planned frame's scene encoding, as the planner publishes it."""

    stamp_ns: int  # the frame's camera stamp (= its trajectory's stamp)
    frame_id: str  # base_link
    tokens: Mapping[str, np.ndarray]  # SCENE_TOKEN_FIELDS -> (N, C) float32: bev (H*W, C), ego (1, C), agents, map
    plan_feature: np.ndarray | None  # (1, C_plan) float32 planning-head ego feature; None: backend has none
    ego_status: np.ndarray  # (4,) float32 speed, accel x, accel y, yaw rate the encoding was conditioned on
    command: int  # the driving command of the frame


@dataclass
class ReceivedBeamTokens:
    """A BeamTokens message as the MLLM teacher and DiMA-Dual take it."""

    stamp_ns: int
    frame_id: str
    scene: Any  # dima_core.models.beam.BeamTokens, batch 1 (bev (1, H*W, C), ego (1, 1, C), agents, map)
    plan_feature: Any | None  # (1, C_plan) float32 torch tensor; None when unusable (see plan_feature_error)
    plan_feature_error: str  # why plan_feature is None ("" when it is set)
    ego_status: np.ndarray  # (4,) float32 (empty when the publisher sent none)
    command: int


def _set_array(msg: BeamTokens, name: str, array: np.ndarray) -> None:
    setattr(msg, f"{name}_shape", [int(d) for d in array.shape])
    setattr(msg, name, array.reshape(-1).tolist())


def to_msg(frame: BeamFrame) -> BeamTokens:
    """The message of ``frame`` (``plan_feature`` fields left empty when it is None).

    Raises:
        ValueError: a token set missing or not 2-d, token sets of different widths, a plan feature that is not
            (1, C), or an ego status that is not 4 values: what :func:`from_msg` would refuse is never published.
    """
    missing = [n for n in SCENE_TOKEN_FIELDS if n not in frame.tokens]
    if missing:
        raise ValueError(f"BeamTokens: token sets {missing} missing (expected {list(SCENE_TOKEN_FIELDS)})")
    tokens = {n: np.asarray(frame.tokens[n], np.float32) for n in SCENE_TOKEN_FIELDS}
    bad = {n: list(a.shape) for n, a in tokens.items() if a.ndim != 2}
    if bad:
        raise ValueError(f"BeamTokens: token sets must be (tokens, channels), got shapes {bad}")
    widths = {n: int(a.shape[1]) for n, a in tokens.items()}
    if len(set(widths.values())) != 1:
        raise ValueError(f"BeamTokens: token sets have different widths {widths}")
    ego_status = np.asarray(frame.ego_status, np.float32).reshape(-1)
    if ego_status.size != 4:
        raise ValueError(f"BeamTokens.ego_status: {ego_status.size} values, expected 4 (speed, ax, ay, yaw rate)")
    msg = BeamTokens()
    msg.header.stamp = ns_to_stamp(frame.stamp_ns)
    msg.header.frame_id = frame.frame_id
    for name, array in tokens.items():
        _set_array(msg, name, array)
    if frame.plan_feature is not None:  # lets the MLLM node plan DiMA-Dual without the cameras
        feature = np.asarray(frame.plan_feature, np.float32)
        if feature.ndim != 2 or feature.shape[0] != 1:
            raise ValueError(f"BeamTokens.plan_feature must be (1, channels), got shape {list(feature.shape)}")
        _set_array(msg, "plan_feature", feature)
    msg.ego_status = [float(v) for v in ego_status]
    msg.command = int(frame.command)
    return msg


def from_msg(msg: BeamTokens) -> ReceivedBeamTokens:
    """The teacher's tensors of a received message.

    Raises:
        ValueError: a token set whose shape does not fit its values, or token sets of different widths (the message
            is unusable; ``plan_feature`` problems are reported in ``plan_feature_error`` instead).
    """
    scene = scene_tokens_from_flat(
        {n: getattr(msg, n) for n in SCENE_TOKEN_FIELDS}, {n: getattr(msg, f"{n}_shape") for n in SCENE_TOKEN_FIELDS}
    )
    feature, error = None, ""
    try:
        feature = plan_feature_from_flat(msg.plan_feature, msg.plan_feature_shape)
    except ValueError as exc:
        error = str(exc)
    return ReceivedBeamTokens(
        stamp_ns=stamp_to_ns(msg.header.stamp),
        frame_id=msg.header.frame_id,
        scene=scene,
        plan_feature=feature,
        plan_feature_error=error,
        ego_status=np.asarray(msg.ego_status, np.float32),
        command=int(msg.command),
    )


__all__ = ["BeamFrame", "ReceivedBeamTokens", "from_msg", "to_msg"]
