"""Model configs: the three shipped YAML files load; bad values fail with the key; parameter counts are sane."""

from pathlib import Path

import pytest

from dima_core.config import ConfigError
from dima_core.models import ModelConfig, load_model_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "model"


@pytest.mark.parametrize(
    "name,grid,agents,vectors,dim,depth",
    [
        ("dima_tiny", (50, 50), 50, 20, 128, 18),
        ("vad_tiny", (100, 100), 300, 100, 256, 50),
        ("vad_base", (200, 200), 300, 100, 256, 50),
    ],
)
def test_shipped_configs(name, grid, agents, vectors, dim, depth):
    cfg = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert isinstance(cfg, ModelConfig) and cfg.name == name
    assert cfg.bev.grid_size == grid and cfg.agent_head.num_queries == agents
    assert cfg.map_head.num_vectors == vectors and cfg.map_head.num_points == 20
    assert cfg.embed_dim == dim and cfg.backbone.depth == depth
    assert cfg.ego.use_ego_status is False
    assert cfg.loss.det_cls == 0.8 and cfg.loss.plan_dir == 0.5 and cfg.loss.map_pts == 0.4


def test_vad_base_has_four_fpn_levels_and_six_layers():
    cfg = load_model_config(CONFIG_DIR / "vad_base.yaml")
    assert cfg.backbone.num_levels == 4 and cfg.bev.num_layers == 6 and cfg.image_size == (1280, 720)


def test_bad_values_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bev:\n  num_layers: 0\n")
    with pytest.raises(ConfigError, match="bev.num_layers"):
        load_model_config(bad)
    bad.write_text("embed_dim: 64\n")  # bev.embed_dim stays 128
    with pytest.raises(ConfigError, match="embed_dim"):
        load_model_config(bad)
    bad.write_text("backbone:\n  depth: 19\n")
    with pytest.raises(ConfigError, match="backbone.depth"):
        load_model_config(bad)
