"""Surrogate-task input transforms on constructed inputs: BEV masking (c) and scene editing (e). No LLM needed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dima_core.constants import EGO_FOOTPRINT_FORWARD_OFFSET_M, EGO_LENGTH_M, FUTURE_STEPS
from dima_core.data.geometry import boxes_overlap
from dima_core.data.qa.scene_edits import add_agent, agent_corners, edit_scene, ego_collides, lane_at, remove_agent
from dima_core.models.mllm.config import SceneEditConfig
from dima_core.models.mllm.masking import BevMasker, gather_tokens
from dima_core.models.mllm.scene_editing import (
    AddedAgentEncoder,
    added_agent_features,
    apply_edits_to_tokens,
    edited_plan_targets,
)
from mllm_fixtures import straight_scene

EGO_FRONT = EGO_FOOTPRINT_FORWARD_OFFSET_M + EGO_LENGTH_M / 2


# ---------------------------------------------------------------------------------------------------- masking (c)


@pytest.mark.parametrize("ratio,expected", [(0.3, 30), (0.0, 0), (0.25, 25)])
def test_masking_exact_ratio_and_replacement(ratio: float, expected: int) -> None:
    torch.manual_seed(0)
    masker = BevMasker(scene_dim=8, ratio=ratio)
    bev = torch.randn(3, 100, 8)
    out = masker(bev, generator=torch.Generator().manual_seed(1))
    assert out.mask.sum(dim=1).tolist() == [expected] * 3
    assert out.positions.shape == (3, expected)
    for b in range(3):
        assert out.positions[b].unique().numel() == expected
        assert out.mask[b, out.positions[b]].all()
    masked = out.tokens[out.mask]
    assert torch.equal(masked, masker.mask_token.detach().expand_as(masked))
    assert torch.equal(out.tokens[~out.mask], bev[~out.mask])
    # The same seed gives the same positions; the default ratio is DiMA's 0.3 when built from config.
    again = masker(bev, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.positions, out.positions)
    if expected:
        assert torch.equal(gather_tokens(bev, out.positions)[0, 0], bev[0, out.positions[0, 0]])


def test_mask_token_receives_gradient() -> None:
    masker = BevMasker(scene_dim=4, ratio=0.5)
    out = masker(torch.randn(2, 10, 4))
    out.tokens.sum().backward()
    assert masker.mask_token.grad is not None and masker.mask_token.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------- editing (e)


def _cfg(**kw) -> SceneEditConfig:
    return dataclasses.replace(SceneEditConfig(), **kw)


def _assert_in_lane(scene, box) -> None:
    lane = lane_at(scene.map_polylines, scene.map_labels, float(box[0]), 0.0, (2.5, 5.5))
    assert lane is not None
    assert lane.right_y + box[3] / 2 <= box[1] <= lane.left_y - box[3] / 2


def _assert_no_overlap_with_agents(scene, box, future) -> None:
    for i in range(scene.num_agents):
        other = scene.agent_boxes[i]
        assert not boxes_overlap(agent_corners(box, box[:2], box[6]), agent_corners(other, other[:2], other[6]))
        for t in range(FUTURE_STEPS):
            assert not boxes_overlap(
                agent_corners(box, future[t], box[6]), agent_corners(other, scene.agent_futures[i, t], other[6])
            )


def test_add_stopped_car_makes_ego_stop_behind_it() -> None:
    scene = straight_scene(speed=8.0, lanes_left=0)  # single-lane road: no way around
    cfg = _cfg(add_distances_m=[15.0], added_speed_choices_mps=[0.0])
    edit = add_agent(scene, cfg, np.random.default_rng(0))
    assert edit is not None and edit.kind == "add" and edit.rule == "stop"
    _assert_in_lane(scene, edit.agent_box)
    assert edit.agent_box[0] == pytest.approx(15.0) and edit.agent_box[1] == pytest.approx(0.0)
    assert np.allclose(edit.agent_future, edit.agent_box[:2])  # stopped
    ego = edit.scene.ego_future
    rear = edit.agent_box[0] - edit.agent_box[4] / 2
    assert np.all(ego[:, 0] + EGO_FRONT <= rear - cfg.follow_gap_m + 1e-6)
    assert np.all(np.diff(ego[:, 0]) >= -1e-9) and ego[-1, 0] == pytest.approx(ego[-2, 0])  # comes to a stop
    assert not ego_collides(ego, edit.scene.agent_boxes, edit.scene.agent_futures, edit.scene.agent_future_mask)
    assert ego_collides(
        scene.ego_future, edit.scene.agent_boxes, edit.scene.agent_futures, edit.scene.agent_future_mask
    )  # the GT plan would have hit it
    assert edit.scene.num_agents == scene.num_agents + 1
    q, a = edit.qa[0]
    assert q == "What should the ego vehicle do if a stopped car appears 15 m ahead in its lane?"
    assert "stop" in a
    assert edit.qa[1][1].startswith("Yes")


def test_add_slow_car_makes_ego_slow_down_and_follow() -> None:
    scene = straight_scene(speed=8.0, lanes_left=1)
    cfg = _cfg(add_distances_m=[15.0], added_speed_choices_mps=[3.0])
    edit = add_agent(scene, cfg, np.random.default_rng(0))
    assert edit is not None and edit.rule == "slow_down"
    ego = edit.scene.ego_future
    rears = edit.agent_future[:, 0] - edit.agent_box[4] / 2
    assert np.all(ego[:, 0] + EGO_FRONT <= rears - cfg.follow_gap_m + 1e-6)
    assert np.all(ego[:, 0] <= scene.ego_future[:, 0] + 1e-9)  # never faster than the GT
    assert ego[-1, 0] > ego[-2, 0] > 0.0  # still moving: follows rather than stops
    assert "slow down" in edit.qa[0][1]


def test_add_stopped_car_with_free_left_lane_overtakes() -> None:
    scene = straight_scene(speed=8.0, lanes_left=1)
    cfg = _cfg(add_distances_m=[20.0], added_speed_choices_mps=[0.0])
    edit = add_agent(scene, cfg, np.random.default_rng(0))
    assert edit is not None and edit.rule == "overtake"
    ego = edit.scene.ego_future
    assert ego[-1, 1] == pytest.approx(3.5)  # ends in the centre of the left lane
    assert np.allclose(ego[:, 0], scene.ego_future[:, 0])  # keeps its GT progress
    assert not ego_collides(ego, edit.scene.agent_boxes, edit.scene.agent_futures, edit.scene.agent_future_mask)
    assert "overtake" in edit.qa[0][1]


def test_occupied_left_lane_forbids_overtaking() -> None:
    scene = straight_scene(speed=8.0, lanes_left=1, agents=[(10.0, 3.5, 8.0)])
    edit = add_agent(scene, _cfg(add_distances_m=[20.0], added_speed_choices_mps=[0.0]), np.random.default_rng(0))
    assert edit is not None and edit.rule == "stop"


def test_added_car_avoids_existing_agents_now_and_in_the_future() -> None:
    # A car behind the ego in its lane at 10 m/s sweeps x = -5 .. 20 over 3 s: spots at 10 m and 20 m collide
    # with its *future*; 35 m is the only valid distance.
    scene = straight_scene(speed=8.0, lanes_left=0, agents=[(-10.0, 0.0, 10.0)])
    cfg = _cfg(add_distances_m=[10.0, 20.0, 35.0], added_speed_choices_mps=[0.0])
    for seed in range(5):
        edit = add_agent(scene, cfg, np.random.default_rng(seed))
        assert edit is not None and edit.agent_box[0] == pytest.approx(35.0)
        _assert_in_lane(scene, edit.agent_box)
        _assert_no_overlap_with_agents(scene, edit.agent_box, edit.agent_future)


def test_no_lane_no_addition() -> None:
    scene = dataclasses.replace(straight_scene(), map_polylines=np.zeros((0, 20, 2)), map_labels=np.zeros(0, np.int64))
    assert add_agent(scene, SceneEditConfig(), np.random.default_rng(0)) is None


def test_far_car_keeps_the_plan() -> None:
    scene = straight_scene(speed=2.0, lanes_left=0)  # 6 m in 3 s
    edit = add_agent(scene, _cfg(add_distances_m=[25.0], added_speed_choices_mps=[0.0]), np.random.default_rng(0))
    assert edit is not None and edit.rule == "keep"
    assert np.allclose(edit.scene.ego_future, scene.ego_future)
    assert edit.qa[1][1].startswith("No")


def test_remove_deletes_an_agent_off_the_ego_path() -> None:
    scene = straight_scene(speed=8.0, lanes_left=2, agents=[(20.0, 0.0, 8.0), (10.0, 7.0, 5.0)])
    edit = remove_agent(scene, SceneEditConfig(), np.random.default_rng(0))
    assert edit is not None and edit.kind == "remove" and edit.removed_index == 1 and edit.rule == "keep"
    assert edit.scene.num_agents == 1
    assert not np.any(np.all(np.isclose(edit.scene.agent_boxes, scene.agent_boxes[1]), axis=1))  # gone
    assert np.allclose(edit.scene.agent_boxes[0], scene.agent_boxes[0])
    assert np.allclose(edit.scene.ego_future, scene.ego_future)
    assert "(10.0, 7.0)" in edit.qa[0][0]
    # Only the in-path car left: nothing may be removed.
    assert remove_agent(edit.scene, SceneEditConfig(), np.random.default_rng(0)) is None


def test_edit_scene_is_deterministic_in_the_seed() -> None:
    scene = straight_scene(speed=8.0, lanes_left=1, agents=[(10.0, 3.5, 5.0), (-12.0, 0.0, 6.0)])
    cfg = SceneEditConfig()
    for seed in range(4):
        a, b = edit_scene(scene, cfg, seed), edit_scene(scene, cfg, seed)
        assert a is not None and b is not None
        assert (a.kind, a.rule, a.qa) == (b.kind, b.rule, b.qa)
        assert np.array_equal(a.agent_box, b.agent_box) and np.array_equal(a.scene.ego_future, b.scene.ego_future)


def test_edits_on_agent_tokens() -> None:
    scene = straight_scene(speed=8.0, lanes_left=1, agents=[(20.0, 0.0, 8.0), (10.0, 7.0, 5.0)])
    add_cfg = _cfg(add_distances_m=[15.0], added_speed_choices_mps=[3.0])
    add = add_agent(straight_scene(speed=8.0, lanes_left=1), add_cfg, np.random.default_rng(0))
    rem = remove_agent(scene, SceneEditConfig(), np.random.default_rng(0))
    torch.manual_seed(0)
    encoder = AddedAgentEncoder(scene_dim=8)
    agents = torch.randn(3, 4, 8)
    boxes = torch.zeros(3, 4, 7)
    boxes[2, :, 0] = torch.tensor([50.0, 10.5, 30.0, 40.0])
    boxes[2, :, 1] = torch.tensor([0.0, 6.5, 0.0, 0.0])  # token 1 decodes 0.7 m from the removed car
    tokens, valid = apply_edits_to_tokens(agents, [None, add, rem], encoder, boxes, match_radius=2.0)
    assert tokens.shape == (3, 5, 8) and valid.shape == (3, 5)
    assert torch.equal(tokens[:, :4], agents)
    assert valid[0].tolist() == [True] * 4 + [False]
    expected = encoder(added_agent_features(add.agent_box, add.agent_future)[None])[0]
    assert torch.allclose(tokens[1, 4], expected) and valid[1].tolist() == [True] * 5
    assert valid[2].tolist() == [True, False, True, True, False]
    # Without decoded boxes, token i is GT agent i.
    _, valid_gt = apply_edits_to_tokens(agents[:1], [rem], encoder, None)
    assert valid_gt[0].tolist() == [True, False, True, True, False]
    targets = edited_plan_targets([None, add, rem])
    assert targets["ego_mask"].sum(dim=1).tolist() == [0, FUTURE_STEPS, FUTURE_STEPS]
    assert targets["agent_valid"].tolist() == [False, True, False]
    assert torch.allclose(targets["ego_future"][1], torch.as_tensor(add.scene.ego_future, dtype=torch.float32))


def test_edit_from_a_driving_sample() -> None:
    from dima_core.data.qa.scene_edits import EditableScene
    from qa_fixtures import AgentSpec, make_sample

    cfg = _cfg(add_distances_m=[20.0], added_speed_choices_mps=[0.0])
    free = EditableScene.from_sample(make_sample(speed=8.0))  # two-lane road, left lane free
    assert add_agent(free, cfg, np.random.default_rng(0)).rule == "overtake"
    busy = EditableScene.from_sample(make_sample(speed=8.0, agents=[AgentSpec(10.0, 3.5, vx=8.0)]))
    assert busy.agent_future_yaw is not None and busy.num_agents == 1
    edit = add_agent(busy, cfg, np.random.default_rng(0))
    assert edit.rule == "stop" and edit.scene.agent_future_yaw.shape == (2, FUTURE_STEPS)
