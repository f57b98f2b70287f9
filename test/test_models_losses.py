"""Losses: Hungarian matching, orientation-invariant map loss, planning L1 and constraints, empty GT, and gradient
flow from every head's loss to that head, the BEV encoder and the backbone."""

import math

import pytest
import torch

from dima_core.config import config_from_dict
from dima_core.models import ModelConfig, VisionPlanner
from dima_core.models.config import LossConfig
from dima_core.models.dummy_inputs import dummy_inputs, dummy_targets
from dima_core.models.losses import (
    PlannerLoss,
    boundary_loss,
    collision_loss,
    direction_loss,
    hungarian_match,
    imitation_l1,
    map_loss,
    match_agents,
    match_map,
    polyline_orderings,
)

torch.set_num_threads(1)
XR, YR = (-30.0, 30.0), (-15.0, 15.0)
TINY = {
    "image_size": [128, 64],
    "embed_dim": 32,
    "backbone": {"fpn_channels": 32},
    "bev": {"grid_size": [10, 10], "embed_dim": 32, "num_heads": 4, "ffn_dim": 64, "dropout": 0.0},
    "agent_head": {"num_queries": 8, "ffn_dim": 64, "dropout": 0.0},
    "map_head": {"num_vectors": 4, "num_points": 5, "ffn_dim": 64, "dropout": 0.0},
    "planner": {"ffn_dim": 64, "feature_dim": 24, "dropout": 0.0},
}


def test_hungarian_on_a_constructed_cost():
    cost = torch.tensor([[9.0, 1.0, 9.0], [1.0, 9.0, 9.0], [9.0, 9.0, 9.0], [9.0, 9.0, 1.0]])
    q, g = hungarian_match(cost)
    assert q.tolist() == [1, 0, 3] and g.tolist() == [0, 1, 2]
    e = hungarian_match(torch.zeros(4, 0))
    assert e[0].numel() == 0 and e[1].numel() == 0


def test_agent_matching_picks_the_right_pairs():
    gt_boxes = torch.tensor(
        [[[10.0, 5.0, 0, 2, 4, 1.5, 0.0], [-20.0, -5.0, 0, 0.6, 0.6, 1.7, 1.0], [0.0, 0.0, 0, 1, 1, 1, 0.0]]]
    )
    gt_labels = torch.tensor([[0, 5, 0]])
    gt_mask = torch.tensor([[True, True, False]])
    pred = torch.zeros(1, 4, 7)
    pred[..., 3:6] = 1.0
    pred[0, 2] = gt_boxes[0, 0] + 0.1  # query 2 ~ gt 0
    pred[0, 0] = gt_boxes[0, 1] - 0.1  # query 0 ~ gt 1
    pred[0, 1, :2] = torch.tensor([0.0, 0.0])  # near the padded gt 2, which must be ignored
    pred[0, 3, :2] = torch.tensor([25.0, 10.0])
    logits = torch.full((1, 4, 10), -4.0)
    m = match_agents(logits, pred, gt_boxes, gt_labels, gt_mask, 2.0, 0.25, 0.25, 2.0)
    assert m.query[0].tolist() == [2, 0] and m.gt[0].tolist() == [0, 1]


def test_polyline_orderings():
    line = torch.stack([torch.arange(4.0), torch.zeros(4)], -1)[None]  # open, 4 points
    orders = polyline_orderings(line, torch.tensor([0]), (1,))
    assert orders.shape == (1, 6, 4, 2)
    assert torch.equal(orders[0, 0], line[0]) and torch.equal(orders[0, 1], line[0].flip(0))
    square = torch.tensor([[[0.0, 0], [1, 0], [1, 1], [0, 0]]])  # closed (first == last)
    orders = polyline_orderings(square, torch.tensor([1]), (1,))
    assert torch.equal(orders[0, 1], torch.tensor([[1.0, 0], [1, 1], [0, 0], [1, 0]]))
    # not a closed class: only forward / reversed
    orders = polyline_orderings(square, torch.tensor([0]), (1,))
    assert {tuple(o.flatten().tolist()) for o in orders[0]} == {
        tuple(square[0].flatten().tolist()),
        tuple(square[0].flip(0).flatten().tolist()),
    }


def _map_losses(gt_polylines):
    pred = torch.stack([torch.linspace(-10, 10, 5), torch.linspace(0, 2, 5)], -1).view(1, 1, 5, 2)
    pred = torch.cat([pred, pred + 8.0], dim=1).requires_grad_(True)
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    labels = torch.tensor([[0, 1]])
    mask = torch.tensor([[True, False]])
    matches, targets = match_map(logits, pred, gt_polylines, labels, mask, XR, YR, (1,), 2.0, 5.0, 0.25, 2.0)
    return map_loss(logits, pred, labels, matches, targets, XR, YR, 0.25, 2.0), matches


def test_map_loss_invariant_to_reversing_the_gt():
    gt = torch.stack([torch.linspace(-9, 11, 5), torch.linspace(0.5, 1.5, 5)], -1).view(1, 1, 5, 2)
    gt = torch.cat([gt, torch.zeros(1, 1, 5, 2)], dim=1)
    (cls_f, pts_f, dir_f), m_f = _map_losses(gt)
    (cls_r, pts_r, dir_r), m_r = _map_losses(torch.cat([gt[:, :1].flip(2), gt[:, 1:]], dim=1))
    assert m_f.query[0].tolist() == m_r.query[0].tolist() == [0]
    assert torch.allclose(pts_f, pts_r) and torch.allclose(dir_f, dir_r) and torch.allclose(cls_f, cls_r)
    assert pts_f > 0


def test_planning_l1_zero_for_perfect_and_masks_invalid_steps():
    gt = torch.randn(2, 6, 2)
    mask = torch.ones(2, 6, dtype=torch.bool)
    assert imitation_l1(gt.clone(), gt, mask) == 0
    plan = gt.clone()
    plan[0, 5] += 100.0
    mask[0, 5] = False
    assert imitation_l1(plan, gt, mask) == 0
    mask[0, 5] = True
    assert imitation_l1(plan, gt, mask) == pytest.approx(200.0 / 24)


def _agent(x, y, score_logit=5.0, cls=0):
    trajs = torch.tensor([x, y]).expand(1, 1, 1, 6, 2).clone()
    logits = torch.full((1, 1, 10), -10.0)
    logits[0, 0, cls] = score_logit
    return trajs, torch.zeros(1, 1, 1), logits


def test_collision_loss():
    plan = torch.stack([torch.arange(1, 7) * 2.0, torch.zeros(6)], -1)[None]  # straight ahead, 2 m per step
    mask = torch.ones(1, 6, dtype=torch.bool)
    through = collision_loss(plan, mask, *_agent(6.0, 0.0))
    assert through > 0
    assert collision_loss(plan, mask, *_agent(6.0, 12.0)) == 0  # far to the side
    assert collision_loss(plan, mask, *_agent(6.0, 0.0, score_logit=-5.0)) == 0  # not confident
    assert collision_loss(plan, mask, *_agent(6.0, 0.0, cls=5)) == 0  # pedestrian: VAD counts vehicles only
    assert collision_loss(plan, torch.zeros(1, 6, dtype=torch.bool), *_agent(6.0, 0.0)) == 0
    plan.requires_grad_(True)
    collision_loss(plan, mask, *_agent(6.0, 0.5)).backward()
    assert plan.grad[0, 2].abs().sum() > 0  # pushes the waypoint next to the agent away


def _polyline(y, cls):
    line = torch.stack([torch.linspace(-5, 25, 10), torch.full((10,), y)], -1).view(1, 1, 10, 2)
    logits = torch.full((1, 1, 3), -10.0)
    logits[0, 0, cls] = 10.0
    return line, logits


def test_boundary_loss():
    plan = torch.stack([torch.arange(1, 7) * 2.0, torch.zeros(6)], -1)[None]
    mask = torch.ones(1, 6, dtype=torch.bool)
    assert boundary_loss(plan, mask, *_polyline(0.5, 2)) > 0  # boundary 0.5 m to the side
    assert boundary_loss(plan, mask, *_polyline(5.0, 2)) == 0
    assert boundary_loss(plan, mask, *_polyline(0.5, 0)) == 0  # a divider is no boundary
    # a plan that crosses the boundary gets no loss from the crossing step on (VAD)
    across = torch.stack([torch.arange(1, 7) * 2.0, torch.arange(1, 7) * 1.0], -1)[None]
    per_step = [boundary_loss(across[:, :k], mask[:, :k], *_polyline(2.5, 2)) for k in (2, 6)]
    assert per_step[0] > 0 and per_step[1] < per_step[0]


def test_direction_loss():
    mask = torch.ones(1, 6, dtype=torch.bool)
    along = torch.stack([torch.arange(1, 7) * 2.0, torch.zeros(6)], -1)[None]
    assert direction_loss(along, mask, *_polyline(1.0, 0)) == pytest.approx(0.0, abs=1e-6)
    assert direction_loss(along.flip(1) * -1, mask, *_polyline(1.0, 0)) == pytest.approx(0.0, abs=1e-6)
    diagonal = torch.stack([torch.arange(1, 7) * 1.0, torch.arange(1, 7) * 1.0], -1)[None] * 0.5
    loss = direction_loss(diagonal, mask, *_polyline(0.0, 0))
    assert 0 < loss <= math.pi / 4 + 1e-5
    assert direction_loss(along, mask, *_polyline(10.0, 0)) == 0  # lane too far
    assert direction_loss(along * 0.01, mask, *_polyline(0.0, 0)) == 0  # static plan


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = config_from_dict(TINY, ModelConfig)
    return cfg, VisionPlanner(cfg)


def test_loss_finite_with_zero_gt(tiny):
    cfg, model = tiny
    out = model(**dummy_inputs(cfg, batch=2))
    losses = PlannerLoss(cfg.loss)(out, dummy_targets(cfg, batch=2, num_agents=0, num_map=0))
    assert set(losses) == {
        "det_cls",
        "det_box",
        "motion_reg",
        "motion_cls",
        "map_cls",
        "map_pts",
        "map_dir",
        "plan_reg",
        "plan_col",
        "plan_bound",
        "plan_dir",
        "total",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_weights_come_from_config(tiny):
    cfg, model = tiny
    inputs, targets = dummy_inputs(cfg, batch=1), dummy_targets(cfg, batch=1)
    with torch.no_grad():
        out = model.eval()(**inputs)
        base = PlannerLoss(LossConfig())(out, targets)
        doubled = PlannerLoss(LossConfig(det_cls=1.6, plan_reg=0.0))(out, targets)
    model.train()
    assert torch.allclose(doubled["det_cls"], 2 * base["det_cls"]) and doubled["plan_reg"] == 0


HEAD_PARAMS = {
    "det_cls": "agent_decoder.cls_branch",
    "det_box": "agent_decoder.reg_branch",
    "motion_reg": "agent_decoder.traj_branch",
    "motion_cls": "agent_decoder.mode_branch",
    "map_cls": "map_decoder.cls_branch",
    "map_pts": "map_decoder.point_branch",
    "plan_reg": "planner.head",
}


def test_gradient_flow_from_every_head(tiny):
    cfg, model = tiny
    model.train()
    out = model(**dummy_inputs(cfg, batch=2))
    losses = PlannerLoss(cfg.loss)(out, dummy_targets(cfg, batch=2))
    params = dict(model.named_parameters())
    for i, (name, head) in enumerate(HEAD_PARAMS.items()):
        model.zero_grad(set_to_none=True)
        losses[name].backward(retain_graph=i < len(HEAD_PARAMS) - 1)

        def grad_norm(prefix):
            return sum(
                p.grad.abs().sum().item() for n, p in params.items() if n.startswith(prefix) and p.grad is not None
            )

        assert grad_norm(head) > 0, f"{name}: no gradient on {head}"
        assert grad_norm("bev_encoder.") > 0, f"{name}: no gradient on the BEV encoder"
        assert grad_norm("backbone.resnet.layer4") > 0, f"{name}: no gradient on the backbone"
        if name == "plan_reg":
            for part in (
                "planner.ego_agent",
                "planner.ego_map",
                "ego_encoder",
                "agent_decoder.layers",
                "map_decoder.layers",
            ):
                assert grad_norm(part) > 0, f"plan_reg: no gradient on {part}"
