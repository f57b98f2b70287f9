"""Keyframe pictures from hand-built samples: layout and size, boxes drawn where they project, BEV layers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dima_core.data.qa import project_box
from dima_core.viz import BevView, PredictionLayer, RenderOptions, bev_panel, figure_size, render_sample, save_png
from dima_core.viz.camera import box_edges_px
from qa_fixtures import IMAGE_H, IMAGE_W, AgentSpec, make_sample


@pytest.fixture
def sample(tmp_path: Path):
    return make_sample(
        [AgentSpec(15.0, 0.0, vx=5.0), AgentSpec(-12.0, 0.0, vx=8.0), AgentSpec(1.5, 3.0, size=(2.5, 12.0, 3.0))],
        image_dir=tmp_path / "img",
    )


def test_layout_size_and_boxes_drawn(sample, tmp_path: Path) -> None:
    opts = RenderOptions(tile_width=400)  # native size: panel pixels = camera pixels
    image = render_sample(sample, options=opts)
    tile_h = round(400 * IMAGE_H / IMAGE_W)
    assert figure_size(sample, opts) == (3 * 400 + 2 * tile_h, 2 * tile_h)
    assert image.shape == (2 * tile_h, 3 * 400 + 2 * tile_h, 3) and image.dtype == np.uint8

    # The car ahead is drawn in CAM_FRONT (top row, middle tile): its box edges change the plain background.
    front = image[:tile_h, 400:800]
    proj = project_box(sample.agents.boxes[0], sample.camera("CAM_FRONT"))
    x0, y0, x1, y1 = (int(round(v)) for v in proj.bbox)
    plain = cv2.imread(sample.camera("CAM_FRONT").image_path)
    changed = np.abs(front.astype(int) - plain.astype(int)).sum(axis=2) > 60
    assert changed[y0 - 1 : y1 + 2, x0 - 1 : x1 + 2].sum() > 2 * ((x1 - x0) + (y1 - y0))
    # ... and nothing is drawn in the empty sky far from any box, except the camera label.
    assert not changed[40:60, 5:60].any()

    out = tmp_path / "x.png"
    save_png(image, out)
    assert cv2.imread(str(out)).shape == image.shape


def test_near_plane_clipping_keeps_edges_finite(sample) -> None:
    cam = sample.camera("CAM_FRONT")
    edges = box_edges_px(sample.agents.boxes[2], cam)  # the bus straddles the camera plane
    assert 0 < len(edges) < 12  # edges wholly behind the camera are dropped
    assert all(np.isfinite(p0).all() and np.isfinite(p1).all() for p0, p1, _ in edges)
    assert box_edges_px(sample.agents.boxes[1], cam) == []  # the car behind: nothing in front


def test_bev_layers(sample) -> None:
    view = BevView((-30.0, 30.0), (-30.0, 30.0), 8.0)
    base = bev_panel(sample, view)
    assert base.shape == (480, 480, 3)
    # Ego box at the centre, dark.
    u, v = view.to_px(np.array([[-0.5, 0.5]]))[0]
    assert base[int(v), int(u)].max() < 80
    # The car 15 m ahead is drawn 15 m up the page (x forward = up).
    u, v = view.to_px(np.array([[15.0, 0.0]]))[0]
    assert np.abs(base[int(v) - 3 : int(v) + 4, int(u) - 3 : int(u) + 4].astype(int) - 250).max() > 30
    plan = np.stack([np.linspace(1, 6, 6), np.linspace(0.5, 8.0, 6)], axis=1)
    layer = PredictionLayer(trajectory=plan, boxes=np.array([[10.0, -10.0, 1.0, 2.0, 4.5, 1.6, 0.3]]))
    with_pred = bev_panel(sample, view, layer)
    u, v = view.to_px(np.array([[10.0, -10.0]]))[0]
    diff = np.abs(with_pred.astype(int) - base.astype(int)).sum(axis=2)
    assert diff[int(v) - 20 : int(v) + 20, int(u) - 20 : int(u) + 20].any()  # predicted box outline
    u, v = view.to_px(plan[-1:])[0]
    assert diff[int(v) - 2 : int(v) + 3, int(u) - 2 : int(u) + 3].any()  # plan end point
    with pytest.raises(ValueError, match=r"PredictionLayer.trajectory: expected shape"):
        bev_panel(sample, view, PredictionLayer(trajectory=np.zeros((6, 3))))


def test_missing_image_is_named(sample, tmp_path: Path) -> None:
    Path(sample.camera("CAM_BACK").image_path).unlink()
    with pytest.raises(FileNotFoundError, match="CAM_BACK.jpg"):
        render_sample(sample)
