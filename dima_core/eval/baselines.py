"""Reference planners that every evaluation scores beside the model (docs/design.md, Evaluation protocol).

Both return ``(6, 2)`` positions at 0.5 .. 3.0 s in the sample's current ego frame (x forward, y left).

Constant velocity
-----------------
Source ``"ego_status"`` (the default): the ego keeps its current longitudinal speed ``EgoStatus.speed`` (CAN bus
``vel[0]`` when available, else the finite-difference estimate of the data layer; signed, so a reversing ego keeps
reversing) along its *current heading*: ``p(t) = (v t, 0)``. With ``use_yaw_rate=True`` it also keeps the yaw rate
``w`` (constant turn rate and velocity): ``p(t) = (v sin(w t) / w, v (1 - cos(w t)) / w)``.
Source ``"past_displacement"``: the velocity vector is the last past displacement over 0.5 s,
``v = (0 - p_past[-1]) / 0.5``, extrapolated linearly ``p(t) = v t``; it captures the direction of motion (and
any drift of the heading) but carries annotation noise. Either source falls back to the other when its input is
missing (non-finite speed / no valid past step), and to standing still when both are.

AD-MLP (ego-status MLP)
-----------------------
The known blind spot of open-loop nuScenes evaluation (Zhai et al. 2023, "Rethinking the Open-Loop Evaluation of
End-to-End Autonomous Driving in nuScenes"): a small MLP that sees no sensor data, only ego status (speed,
acceleration, yaw rate), the past trajectory and the driving command, regresses the 6 future positions with an
L1 loss on the train split. Inputs (15,): ``EgoStatus.as_vector()`` (4), ``ego_past`` (4, 2) flattened oldest first
(8), one-hot command in VAD's order (3). Features are standardised with train-split statistics stored in the model.

Robust standardisation. A feature that barely varies in training (the yaw rate of a split without turns, a command
never given) would make a spread floor of 1e-6 turn an ordinary test value into hundreds of sigmas (observed: a
test yaw rate ~380 sigma out, 105 m L2, no warning). So
- the spread of each feature is floored at its *physical* scale (:data:`ADMLP_SPREAD_FLOOR`: 1 m/s of speed,
  0.5 m/s^2 of acceleration, 0.1 rad/s of yaw rate (10 m/s on a 100 m radius), 0.5 m of past position, 1 for the
  one-hot command), never below what that unit can resolve;
- raw inputs are clipped to the range seen in training before standardisation, so an unseen value reaches the MLP as
  the nearest value it was fitted on instead of an extrapolation of unknown sign;
- inputs at least one (floored) spread outside the fitted range are counted per feature (a command never seen in
  training is one); the first time a feature
  goes out of range a WARNING names it, and :meth:`ADMLPBaseline.input_report` (the ``input_range`` field of the
  ``dima eval`` report) says how many planned samples were affected and by how much.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np

from dima_core.constants import COMMAND_NAMES, FUTURE_STEPS, PAST_STEPS, STEP_SECONDS
from dima_core.data.sample import DrivingSample

log = logging.getLogger(__name__)

_TIMES = STEP_SECONDS * np.arange(1, FUTURE_STEPS + 1)  # (6,) 0.5 .. 3.0 s

VelocitySource = Literal["ego_status", "past_displacement"]


def constant_velocity_plan(speed: float, yaw_rate: float = 0.0, times_s: np.ndarray = _TIMES) -> np.ndarray:
    """(T, 2) positions of an ego keeping ``speed`` (m/s, along its current heading) and ``yaw_rate`` (rad/s)."""
    t = np.asarray(times_s, np.float64)
    if abs(yaw_rate) < 1e-6:  # the arc formula divides by the yaw rate; a straight line is its limit
        return np.stack([speed * t, np.zeros_like(t)], axis=-1)
    return np.stack([speed * np.sin(yaw_rate * t) / yaw_rate, speed * (1.0 - np.cos(yaw_rate * t)) / yaw_rate], axis=-1)


def _past_velocity(sample: DrivingSample) -> np.ndarray | None:
    """(2,) ego-frame velocity from the last past displacement, or None when the previous keyframe is missing."""
    if sample.ego_past.shape[0] == 0 or not bool(np.asarray(sample.ego_past_mask)[-1]):
        return None
    last = np.asarray(sample.ego_past[-1], np.float64)
    if not np.isfinite(last).all():
        return None
    return -last / STEP_SECONDS


@dataclass(frozen=True)
class ConstantVelocityBaseline:
    """Constant-velocity planner (see the module docstring for the sources and fallbacks)."""

    source: VelocitySource = "ego_status"
    use_yaw_rate: bool = False

    @property
    def name(self) -> str:
        base = "const_velocity" if self.source == "ego_status" else "const_velocity_past"
        return base + ("_yaw_rate" if self.use_yaw_rate else "")

    def plan(self, sample: DrivingSample) -> np.ndarray:
        """(6, 2) float64 positions in the sample's ego frame."""
        speed = float(sample.ego_status.speed)
        yaw_rate = float(sample.ego_status.yaw_rate) if self.use_yaw_rate else 0.0
        if not math.isfinite(yaw_rate):
            yaw_rate = 0.0
        past_v = _past_velocity(sample)
        if self.source == "past_displacement" and past_v is not None:
            return past_v[None, :] * _TIMES[:, None]
        if math.isfinite(speed):
            return constant_velocity_plan(speed, yaw_rate)
        if past_v is not None:
            return past_v[None, :] * _TIMES[:, None]
        return np.zeros((FUTURE_STEPS, 2))


# ----------------------------------------------------------------------------------------------------- AD-MLP

ADMLP_INPUT_DIM = 4 + PAST_STEPS * 2 + len(COMMAND_NAMES)
# Names of the inputs, in order (ego status, past positions oldest first, one-hot command).
ADMLP_FEATURE_NAMES: tuple[str, ...] = (
    ("speed", "accel_x", "accel_y", "yaw_rate")
    + tuple(f"past_{axis}_{-STEP_SECONDS * (PAST_STEPS - k):+.1f}s" for k in range(PAST_STEPS) for axis in ("x", "y"))
    + tuple(f"command_{name}" for name in COMMAND_NAMES)
)
# Smallest spread each input is standardised with, in its own unit (module docstring).
ADMLP_SPREAD_FLOOR = np.array([1.0, 0.5, 0.5, 0.1] + [0.5] * (PAST_STEPS * 2) + [1.0] * len(COMMAND_NAMES), np.float32)
# An input is reported out of range when it lies at least this many (floored) spreads outside the fitted range.
OUT_OF_RANGE_SPREADS = 1.0


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one thread, restoring the previous setting after.

    Matrices this small gain nothing from intra-op threads, and on a loaded 2-core machine the thread hand-offs
    made each step ~50x slower (measured: 450 steps took 24 s with 2 threads, 0.4 s with 1).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def admlp_features(sample: DrivingSample) -> np.ndarray:
    """(ADMLP_INPUT_DIM,) float32: ego status (4), past positions (PAST_STEPS * 2), one-hot command (3)."""
    status = np.nan_to_num(sample.ego_status.as_vector().astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    past = np.nan_to_num(np.asarray(sample.ego_past, np.float32).reshape(-1), nan=0.0)
    command = np.zeros(len(COMMAND_NAMES), np.float32)
    command[int(sample.command)] = 1.0
    return np.concatenate([status, past, command])


@dataclass(frozen=True)
class ADMLPConfig:
    """Training settings of the ego-status MLP (defaults train in seconds on CPU for a few thousand samples)."""

    hidden: int = 256
    layers: int = 3
    epochs: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def robust_statistics(features: np.ndarray) -> dict[str, np.ndarray]:
    """``{"mean", "std", "lo", "hi"}`` (each (ADMLP_INPUT_DIM,) float32) of (N, ADMLP_INPUT_DIM) training features:
    the spread floored at :data:`ADMLP_SPREAD_FLOOR`, the fitted range for clipping (module docstring)."""
    features = np.asarray(features, np.float32)
    return {
        "mean": features.mean(axis=0),
        "std": np.maximum(features.std(axis=0), ADMLP_SPREAD_FLOOR).astype(np.float32),
        "lo": features.min(axis=0),
        "hi": features.max(axis=0),
    }


class ADMLPBaseline:
    """Ego-status-only MLP planner. Build with :meth:`fit`; ``plan`` / ``plan_batch`` predict and count inputs
    outside the fitted range (:meth:`input_report`)."""

    name = "ad_mlp"

    def __init__(self, model: object, config: ADMLPConfig):
        self.model = model  # an _ADMLPNet (torch.nn.Module); typed loosely so importing this module needs no torch
        self.config = config
        self._planned = 0
        self._samples_out = 0
        self._feature_out = np.zeros(ADMLP_INPUT_DIM, np.int64)
        self._feature_excess = np.zeros(ADMLP_INPUT_DIM, np.float64)  # largest excess seen, in spreads

    @staticmethod
    def _build(config: ADMLPConfig, stats: dict[str, np.ndarray]) -> object:
        import torch
        from torch import nn

        class _ADMLPNet(nn.Module):
            """(B, ADMLP_INPUT_DIM) raw features -> (B, 6, 2) positions; clipping to the fitted range and
            standardisation inside (buffers)."""

            def __init__(self) -> None:
                super().__init__()
                for key in ("mean", "std", "lo", "hi"):
                    self.register_buffer(key, torch.as_tensor(stats[key], dtype=torch.float32))
                dims = [ADMLP_INPUT_DIM] + [config.hidden] * (config.layers - 1)
                blocks: list[nn.Module] = []
                for a, b in pairwise(dims):
                    blocks += [nn.Linear(a, b), nn.ReLU()]
                blocks.append(nn.Linear(dims[-1], FUTURE_STEPS * 2))
                self.net = nn.Sequential(*blocks)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = torch.minimum(torch.maximum(x, self.lo), self.hi)
                return self.net((x - self.mean) / self.std).view(-1, FUTURE_STEPS, 2)

        return _ADMLPNet()

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        targets: np.ndarray,
        config: ADMLPConfig = ADMLPConfig(),
    ) -> ADMLPBaseline:
        """Train on (N, ADMLP_INPUT_DIM) features and (N, 6, 2) GT futures with an L1 loss (AdamW, minibatches).

        Deterministic for a given seed on CPU. Use only samples with a full GT future.
        """
        import torch

        features = np.asarray(features, np.float32)
        targets = np.asarray(targets, np.float32)
        if features.ndim != 2 or features.shape[1] != ADMLP_INPUT_DIM:
            raise ValueError(f"features must be (N, {ADMLP_INPUT_DIM}), got {features.shape}")
        if targets.shape != (features.shape[0], FUTURE_STEPS, 2):
            raise ValueError(f"targets must be ({features.shape[0]}, {FUTURE_STEPS}, 2), got {targets.shape}")
        if features.shape[0] == 0:
            raise ValueError("AD-MLP needs at least one training sample")
        if not np.isfinite(features).all():
            raise ValueError("AD-MLP features must be finite (admlp_features replaces missing values by 0)")
        gen = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        model = cls._build(config, robust_statistics(features))
        x = torch.from_numpy(features)
        y = torch.from_numpy(targets)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        n = x.shape[0]
        model.train()
        with _single_thread():
            for _ in range(config.epochs):
                order = torch.randperm(n, generator=gen)
                for start in range(0, n, config.batch_size):
                    idx = order[start : start + config.batch_size]
                    loss = (model(x[idx]) - y[idx]).abs().mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        model.eval()
        return cls(model, config)

    @classmethod
    def fit_samples(cls, samples: Sequence[DrivingSample], config: ADMLPConfig = ADMLPConfig()) -> ADMLPBaseline:
        """:meth:`fit` on the samples with a full GT future."""
        usable = [s for s in samples if s.has_full_future]
        if not usable:
            raise ValueError("AD-MLP needs training samples with a full 6-step GT future; none were given")
        feats = np.stack([admlp_features(s) for s in usable])
        targets = np.stack([np.asarray(s.ego_future, np.float32) for s in usable])
        return cls.fit(feats, targets, config)

    def save(self, path: str | os.PathLike) -> None:
        """Write config + weights (incl. the feature statistics) atomically (temp file + rename)."""
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        state = self.model.state_dict()  # type: ignore[attr-defined]
        torch.save({"config": asdict(self.config), "state_dict": state}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ADMLPBaseline:
        """Read a model written by :meth:`save`."""
        import torch

        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
        config = ADMLPConfig(**blob["config"])
        state = dict(blob["state_dict"])
        if "lo" not in state or "hi" not in state:
            # Saved before the robust standardisation: its weights were fitted on the 1e-6-floored spread, which
            # must stay as it is; with no fitted range stored, nothing is clipped or reported out of range.
            log.warning(
                "AD-MLP model %s predates the fitted-range clipping: inputs are neither clipped nor checked "
                "against the training range (refit it for the robust standardisation)",
                path,
            )
            state["lo"] = torch.full((ADMLP_INPUT_DIM,), float("-inf"))
            state["hi"] = torch.full((ADMLP_INPUT_DIM,), float("inf"))
        model = cls._build(config, {key: state[key].numpy() for key in ("mean", "std", "lo", "hi")})
        model.load_state_dict(state)  # type: ignore[attr-defined]
        model.eval()  # type: ignore[attr-defined]
        return cls(model, config)

    def _buffer(self, name: str) -> np.ndarray:
        return getattr(self.model, name).numpy().astype(np.float64)

    def fitted_range(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` (ADMLP_INPUT_DIM,) raw-feature range of the training set (inputs are clipped to it)."""
        return self._buffer("lo"), self._buffer("hi")

    def _count_out_of_range(self, features: np.ndarray) -> None:
        """Count and warn about inputs at least OUT_OF_RANGE_SPREADS spreads outside the fitted range."""
        lo, hi = self.fitted_range()
        std = np.maximum(self._buffer("std"), 1e-12)
        excess = np.maximum(np.maximum(lo - features, features - hi), 0.0) / std  # (B, D), in spreads
        out = excess >= OUT_OF_RANGE_SPREADS
        self._planned += features.shape[0]
        self._samples_out += int(out.any(axis=1).sum())
        for j in np.flatnonzero(out.any(axis=0)):
            first = self._feature_out[j] == 0
            self._feature_out[j] += int(out[:, j].sum())
            self._feature_excess[j] = max(self._feature_excess[j], float(excess[:, j].max()))
            if first:
                row = int(np.argmax(excess[:, j]))
                log.warning(
                    "AD-MLP input %s = %.4g is %.1f spreads outside the range fitted on the training split "
                    "[%.4g, %.4g]: clipped to it (the training split lacks such samples; see the report's "
                    "input_range)",
                    ADMLP_FEATURE_NAMES[j],
                    features[row, j],
                    excess[row, j],
                    lo[j],
                    hi[j],
                )

    def input_report(self) -> dict[str, object]:
        """What the planned inputs looked like against the fitted range (the ``input_range`` report field)."""
        lo, hi = self.fitted_range()
        features = {
            ADMLP_FEATURE_NAMES[j]: {
                "samples": int(self._feature_out[j]),
                "max_spreads_outside": round(float(self._feature_excess[j]), 3),
                "fitted_range": [float(lo[j]), float(hi[j])],
            }
            for j in np.flatnonzero(self._feature_out)
        }
        return {
            "planned_samples": self._planned,
            "samples_out_of_range": self._samples_out,
            "threshold_spreads": OUT_OF_RANGE_SPREADS,
            "clipped_to_fitted_range": True,
            "features_out_of_range": features,
        }

    def plan_batch(self, features: np.ndarray) -> np.ndarray:
        """(B, ADMLP_INPUT_DIM) features -> (B, 6, 2) float64 positions."""
        import torch

        features = np.asarray(features, np.float32)
        if features.ndim != 2 or features.shape[1] != ADMLP_INPUT_DIM:
            raise ValueError(f"features must be (B, {ADMLP_INPUT_DIM}), got {features.shape}")
        self._count_out_of_range(features.astype(np.float64))
        with torch.no_grad(), _single_thread():
            out = self.model(torch.as_tensor(features))  # type: ignore[operator]
        return out.numpy().astype(np.float64)

    def plan(self, sample: DrivingSample) -> np.ndarray:
        """(6, 2) float64 positions in the sample's ego frame."""
        return self.plan_batch(admlp_features(sample)[None])[0]


__all__ = [
    "ADMLPBaseline",
    "ADMLPConfig",
    "ADMLP_FEATURE_NAMES",
    "ADMLP_INPUT_DIM",
    "ADMLP_SPREAD_FLOOR",
    "OUT_OF_RANGE_SPREADS",
    "ConstantVelocityBaseline",
    "admlp_features",
    "constant_velocity_plan",
    "robust_statistics",
]
