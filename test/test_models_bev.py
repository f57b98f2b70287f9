"""BEV geometry and encoder: projection, masking, ego-motion warp, encoder shapes (with and without temporal)."""

import math

import torch

from dima_core.config import config_from_dict
from dima_core.models.bev_encoder import BevEncoder
from dima_core.models.bev_geometry import (
    bev_cell_centres,
    fraction_to_metric,
    metric_to_fraction,
    project_to_cameras,
    rigid_inverse,
    warp_bev,
)
from dima_core.models.config import BevConfig
from dima_core.models.dummy_inputs import camera_rig

torch.set_num_threads(1)
XR, YR = (-30.0, 30.0), (-15.0, 15.0)


def test_fraction_roundtrip_and_cell_order():
    xy = torch.tensor([[10.0, -5.0], [-30.0, 15.0]])
    frac = metric_to_fraction(xy, XR, YR)
    assert torch.allclose(frac, torch.tensor([[1 / 3, 2 / 3], [1.0, 0.0]]))
    assert torch.allclose(fraction_to_metric(frac, XR, YR), xy)
    centres = bev_cell_centres((4, 2), XR, YR)  # row-major: rows along x
    assert torch.allclose(centres[0], torch.tensor([-22.5, -7.5])) and torch.allclose(
        centres[1], torch.tensor([-22.5, 7.5])
    )


def test_rigid_inverse():
    a = math.radians(30)
    t = torch.eye(4)
    t[:2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    t[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(rigid_inverse(t) @ t, torch.eye(4), atol=1e-6)


def test_projection_visibility():
    k, c2e = camera_rig(1, (200, 100))
    pts = torch.tensor([[[10.0, 0.0, 1.5]], [[-10.0, 0.0, 1.5]]])  # ahead, behind
    uv, valid = project_to_cameras(pts, k, c2e, (200, 100))
    assert uv.shape == (1, 6, 2, 1, 2) and valid.shape == (1, 6, 2, 1)
    assert valid[0, 0, 0, 0] == 1 and torch.allclose(uv[0, 0, 0, 0], torch.tensor([0.5, 0.5]), atol=1e-3)
    assert valid[0, 0, 1, 0] == 0  # behind the front camera
    assert valid[0, 3, 1, 0] == 1  # seen by the back camera
    assert torch.isfinite(uv).all()


def test_warp_bev_translation():
    prev = torch.zeros(1, 1, 6, 3)
    prev[0, 0, 4, 1] = 1.0  # cell at x = 15 (row 4 of 6 over [-30, 30]), y = 0
    motion = torch.eye(4)[None].clone()
    motion[0, 0, 3] = -10.0  # ego moved 10 m forward: a point at x=15 before is at x=5 now
    out = warp_bev(prev, motion, XR, YR)
    assert out[0, 0, 3, 1] > 0.99 and out[0, 0, 4, 1] < 1e-6
    assert torch.allclose(warp_bev(prev, torch.eye(4)[None], XR, YR), prev, atol=1e-6)


def _bev_cfg(**kw):
    base = {
        "grid_size": [8, 6],
        "embed_dim": 16,
        "num_heads": 2,
        "ffn_dim": 32,
        "num_layers": 2,
        "num_z_anchors": 2,
        "num_points_per_anchor": 2,
        "num_self_points": 2,
    }
    base.update(kw)
    return config_from_dict(base, BevConfig)


def test_bev_encoder_shapes_and_temporal():
    k, c2e = camera_rig(2, (64, 32))
    feats = [torch.randn(12, 8, 4, 8), torch.randn(12, 8, 2, 4)]
    enc = BevEncoder(_bev_cfg(), in_channels=8, num_levels=2, num_cameras=6, image_size=(64, 32))
    bev = enc(feats, k, c2e)
    assert bev.shape == (2, 16, 8, 6) and torch.isfinite(bev).all()
    enc_t = BevEncoder(_bev_cfg(use_temporal=True), 8, 2, 6, (64, 32)).eval()
    with torch.no_grad():
        first = enc_t(feats, k, c2e)  # no previous BEV: current queries stand in
        motion = torch.eye(4).expand(2, 4, 4)
        second = enc_t(feats, k, c2e, prev_bev=first, ego_motion=motion)
        third = enc_t(feats, k, c2e, prev_bev=torch.zeros_like(first), ego_motion=motion)
    assert second.shape == first.shape
    assert not torch.allclose(second, third)  # the previous BEV matters


def test_bev_cells_outside_every_camera_get_no_image_feature():
    k, c2e = camera_rig(1, (64, 32), num_cameras=1)  # only a front camera
    enc = BevEncoder(_bev_cfg(num_layers=1, dropout=0.0), 8, 1, 1, (64, 32)).eval()
    with torch.no_grad():
        a = enc([torch.randn(1, 8, 2, 4)], k, c2e)
        b = enc([torch.randn(1, 8, 2, 4)], k, c2e)
    # rows 0..3 are behind the ego (x < 0): unaffected by the image; rows ahead change with it
    assert torch.allclose(a[:, :, :3], b[:, :, :3], atol=1e-5)
    assert not torch.allclose(a[:, :, 5:], b[:, :, 5:], atol=1e-5)
