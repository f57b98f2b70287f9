"""BEAM heads, planner, BeamTokens and the full VisionPlanner: shapes, command selection, external features."""

import pytest
import torch

from dima_core.config import config_from_dict
from dima_core.models import BEAM_FIELDS, BeamTokens, ModelConfig, VisionPlanner, select_by_command
from dima_core.models.config import AgentHeadConfig, EgoConfig, MapHeadConfig, PlannerConfig
from dima_core.models.dummy_inputs import dummy_inputs
from dima_core.models.heads import AgentDecoder, EgoEncoder, MapDecoder
from dima_core.models.planner import PlanningTransformer

torch.set_num_threads(1)
XR, YR = (-30.0, 30.0), (-15.0, 15.0)

TINY = {
    "image_size": [128, 64],
    "embed_dim": 32,
    "backbone": {"fpn_channels": 32},
    "bev": {"grid_size": [10, 10], "embed_dim": 32, "num_heads": 4, "ffn_dim": 64},
    "agent_head": {"num_queries": 8, "ffn_dim": 64},
    "map_head": {"num_vectors": 4, "num_points": 5, "ffn_dim": 64},
    "planner": {"ffn_dim": 64, "feature_dim": 24},
}


def test_agent_decoder_shapes():
    dec = AgentDecoder(AgentHeadConfig(num_queries=7, num_modes=3, ffn_dim=32, num_heads=2), 16, XR, YR)
    out = dec(torch.randn(2, 16, 6, 4), torch.randn(2, 5, 16), torch.rand(2, 5, 2))
    assert out.tokens.shape == (2, 7, 16) and out.boxes.shape == (2, 7, 7) and out.logits.shape == (2, 7, 10)
    assert out.velocities.shape == (2, 7, 2) and out.trajectories.shape == (2, 7, 3, 6, 2)
    assert out.mode_logits.shape == (2, 7, 3) and out.centres.shape == (2, 7, 2)
    assert (out.boxes[..., 3:6] > 0).all()
    assert (out.boxes[..., 0].abs() <= 30).all() and (out.boxes[..., 1].abs() <= 15).all()
    assert dec(torch.randn(2, 16, 6, 4)).trajectories.shape == (2, 7, 3, 6, 2)  # without map tokens


def test_map_decoder_shapes():
    dec = MapDecoder(MapHeadConfig(num_vectors=3, num_points=4, ffn_dim=32, num_heads=2), 16, XR, YR)
    out = dec(torch.randn(2, 16, 6, 4))
    assert out.tokens.shape == (2, 3, 16) and out.polylines.shape == (2, 3, 4, 2) and out.logits.shape == (2, 3, 3)
    assert (out.polylines[..., 0].abs() <= 30).all() and (out.polylines[..., 1].abs() <= 15).all()


def test_ego_encoder_status_switch():
    off = EgoEncoder(EgoConfig(use_ego_status=False), 16)
    cmd = torch.tensor([0, 2])
    assert off(torch.randn(2, 4), cmd).shape == (2, 1, 16)
    assert torch.allclose(off(torch.zeros(2, 4), cmd), off(torch.randn(2, 4), cmd))  # status ignored
    on = EgoEncoder(EgoConfig(use_ego_status=True), 16)
    assert not torch.allclose(on(torch.zeros(2, 4), cmd), on(torch.ones(2, 4), cmd))
    assert not torch.allclose(
        off(torch.zeros(2, 4), torch.tensor([0, 0])), off(torch.zeros(2, 4), torch.tensor([1, 1]))
    )


def test_command_selects_mode():
    trajs = torch.arange(2 * 3 * 6 * 2, dtype=torch.float32).view(2, 3, 6, 2)
    sel = select_by_command(trajs, torch.tensor([1, 2]))
    assert torch.equal(sel[0], trajs[0, 1]) and torch.equal(sel[1], trajs[1, 2])


def test_planner_outputs_and_external_feature():
    cfg = PlannerConfig(num_heads=2, ffn_dim=32, feature_dim=24)
    plan = PlanningTransformer(cfg, 16, XR, YR).eval()
    args = (
        torch.randn(2, 1, 16),
        torch.randn(2, 5, 16),
        torch.rand(2, 5, 2),
        torch.randn(2, 3, 16),
        torch.rand(2, 3, 2),
    )
    out = plan(*args, torch.tensor([0, 1]))
    assert out.trajectories.shape == (2, 3, 6, 2) and out.trajectory.shape == (2, 6, 2)
    assert out.ego_feature.shape == (2, 24)
    assert torch.equal(out.trajectory[1], out.trajectories[1, 1])
    # the head on an externally provided penultimate feature (DiMA-Dual: max-pool with the MLLM's feature)
    assert torch.allclose(plan.decode(out.ego_feature), out.trajectories)
    pooled = torch.maximum(out.ego_feature, torch.randn(2, 24))
    assert plan.decode(pooled).shape == (2, 3, 6, 2)
    # waypoints are cumulative sums of per-step offsets
    offsets = plan.head(out.ego_feature).view(2, 3, 6, 2)
    assert torch.allclose(out.trajectories[:, :, -1], offsets.sum(dim=2), atol=1e-5)


def test_vision_planner_end_to_end_shapes():
    cfg = config_from_dict(TINY, ModelConfig)
    model = VisionPlanner(cfg).eval()
    with torch.no_grad():
        out = model(**dummy_inputs(cfg, batch=2))
    assert out.trajectories.shape == (2, 3, 6, 2) and out.trajectory.shape == (2, 6, 2)
    assert out.ego_feature.shape == (2, 24) and out.bev.shape == (2, 32, 10, 10)
    out.beam.validate()
    assert out.beam.shapes() == {
        "bev": (2, 100, 32),
        "ego": (2, 1, 32),
        "agents": (2, 8, 32),
        "map": (2, 4, 32),
        "agent_boxes": (2, 8, 7),
        "agent_logits": (2, 8, 10),
        "agent_velocities": (2, 8, 2),
        "agent_trajectories": (2, 8, 6, 6, 2),
        "agent_mode_logits": (2, 8, 6),
        "map_polylines": (2, 4, 5, 2),
        "map_logits": (2, 4, 3),
    }
    for i, c in enumerate(dummy_inputs(cfg, batch=2)["command"].tolist()):
        assert torch.equal(out.trajectory[i], out.trajectories[i, c])


def test_vision_planner_temporal():
    cfg = config_from_dict({**TINY, "bev": {**TINY["bev"], "use_temporal": True}}, ModelConfig)
    model = VisionPlanner(cfg).eval()
    inputs = dummy_inputs(cfg, batch=1)
    with torch.no_grad():
        first = model(**{k: v for k, v in inputs.items() if k not in ("prev_bev", "ego_motion")})
        second = model(**{**inputs, "prev_bev": first.bev})
    assert second.bev.shape == first.bev.shape and not torch.allclose(second.bev, first.bev)


def test_beam_tokens_dict_roundtrip_and_helpers():
    cfg = config_from_dict(TINY, ModelConfig)
    out = VisionPlanner(cfg)(**dummy_inputs(cfg))
    beam = out.beam
    d = beam.as_dict()
    assert tuple(d) == BEAM_FIELDS
    again = BeamTokens.from_dict({k: v.detach().numpy() for k, v in d.items()})
    assert all(torch.equal(getattr(again, k), d[k].detach()) for k in BEAM_FIELDS)
    detached = beam.detach().to(torch.float64)
    assert not detached.bev.requires_grad and detached.agents.dtype == torch.float64
    assert beam.num_agents == 8 and beam.num_map == 4 and beam.batch_size == 1
    with pytest.raises(KeyError):
        BeamTokens.from_dict({"bev": d["bev"]})
    with pytest.raises(ValueError):
        BeamTokens(**{**d, "ego": d["agents"]}).validate()


def test_ego_status_channels_that_are_off_do_not_reach_the_token():
    from dima_core.models.config import EgoConfig
    from dima_core.models.heads.ego import EgoEncoder

    torch.manual_seed(0)
    enc = EgoEncoder(EgoConfig(use_ego_status=True, ego_status_channels=(True, False, False, True)), 16).eval()
    status = torch.tensor([[8.0, -2.0, 0.5, 0.1]])
    command = torch.tensor([2])
    other_accel = status.clone()
    other_accel[0, 1:3] = torch.tensor([1.5, -0.7])
    other_speed = status.clone()
    other_speed[0, 0] = 2.0
    with torch.no_grad():
        token = enc(status, command)
        assert torch.equal(token, enc(other_accel, command))  # ax, ay are not read
        assert not torch.allclose(token, enc(other_speed, command))  # speed is
