"""The planner's deployment interface: input/output names, fixed shapes and dtypes, and input validation.

One source of truth for the exporter (which checks the ONNX graph against it), the sidecar (which records it) and
every runtime backend (which validates each frame against it before running). Batch size is fixed to 1: the vehicle
runs one frame set at a time, and fixed shapes let TensorRT pick the fastest kernels without optimisation profiles.

Inputs (``constants.CAMERA_NAMES`` order, N = ``ModelConfig.num_cameras``)::

    images      (1, N, 3, H, W) float32  RGB in [0, 1] at ModelConfig.image_size (W, H)
    intrinsics  (1, N, 3, 3)    float32  pinhole matrices scaled to the network input size
    cam_to_ego  (1, N, 4, 4)    float32  camera optical frame -> ego frame
    ego_status  (1, 4)          float32  only when ego.use_ego_status (the exporter prunes unused inputs)
    command     (1,)            int64    0 right, 1 left, 2 straight
    prev_bev    (1, C, Hb, Wb)  float32  only when bev.use_temporal: the previous frame's ``bev_map`` output
    ego_motion  (1, 4, 4)       float32  only when bev.use_temporal: previous ego frame -> current ego frame

Outputs: ``trajectory (1, T, 2)`` and ``trajectories (1, num_commands, T, 2)`` always, ``bev_map`` when the model is
temporal (fed back as the next ``prev_bev``), and with ``with_beam`` every name of
:data:`~dima_core.models.vision_planner.EXPORT_OUTPUT_NAMES` (ego feature, BEV map and the BEAM tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dima_core.models.config import ModelConfig
from dima_core.models.vision_planner import EXPORT_INPUT_NAMES, EXPORT_OUTPUT_NAMES, EXPORT_TEMPORAL_INPUT_NAMES

# Always exported: what the planner node publishes.
TRAJECTORY_OUTPUTS: tuple[str, ...] = ("trajectory", "trajectories")
# The temporal model's recurrent state: the runtime feeds it back as the next frame's prev_bev.
RECURRENT_OUTPUT = "bev_map"


class InputValidationError(ValueError):
    """A frame's inputs do not match the model's interface (missing/extra name, shape, dtype, NaN/inf)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, fixed shape and numpy dtype name (``"float32"``, ``"float16"``, ``"int64"``) of one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["dtype"]))


def planner_input_specs(config: ModelConfig) -> tuple[TensorSpec, ...]:
    """The inputs a batch-1 export of ``config`` has, in graph order (pruned inputs left out)."""
    n = config.num_cameras
    w, h = config.image_size
    shapes: dict[str, tuple[tuple[int, ...], str]] = {
        "images": ((1, n, 3, h, w), "float32"),
        "intrinsics": ((1, n, 3, 3), "float32"),
        "cam_to_ego": ((1, n, 4, 4), "float32"),
        "ego_status": ((1, 4), "float32"),
        "command": ((1,), "int64"),
        "prev_bev": ((1, config.embed_dim, *config.bev.grid_size), "float32"),
        "ego_motion": ((1, 4, 4), "float32"),
    }
    names = list(EXPORT_INPUT_NAMES) + (list(EXPORT_TEMPORAL_INPUT_NAMES) if config.bev.use_temporal else [])
    if not config.ego.use_ego_status:
        # torch.onnx.export drops graph inputs nothing reads; without ego status the graph has no such input.
        names.remove("ego_status")
    return tuple(TensorSpec(name, *shapes[name]) for name in names)


def planner_output_names(config: ModelConfig, with_beam: bool) -> tuple[str, ...]:
    """Exported output names, in :data:`EXPORT_OUTPUT_NAMES` order."""
    if with_beam:
        return EXPORT_OUTPUT_NAMES
    wanted = set(TRAJECTORY_OUTPUTS) | ({RECURRENT_OUTPUT} if config.bev.use_temporal else set())
    return tuple(name for name in EXPORT_OUTPUT_NAMES if name in wanted)


def example_inputs(config: ModelConfig, specs: tuple[TensorSpec, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible inputs for ``specs`` (random images, a nuScenes-like rig): warm-up, parity and benchmarks."""
    from dima_core.models.dummy_inputs import dummy_inputs

    tensors = dummy_inputs(config, batch=1, seed=seed)
    return {s.name: tensors[s.name].numpy().astype(s.dtype, copy=False) for s in specs}


def validate_inputs(inputs: Mapping[str, Any], specs: tuple[TensorSpec, ...], source: str) -> dict[str, np.ndarray]:
    """Check a frame against ``specs``; return contiguous arrays in spec order or raise :class:`InputValidationError`.

    Float inputs must be finite: a NaN camera pose or image silently poisons every output, so it is refused here
    with the input's name rather than discovered as a NaN trajectory downstream. Integer/float kinds must match the
    spec (a float command or an int image is a caller bug); float64 is accepted for float32 inputs and converted,
    since numpy produces float64 by default and the conversion is exact enough for every input here.
    """
    expected = [s.name for s in specs]
    missing = [n for n in expected if n not in inputs]
    extra = sorted(set(inputs) - set(expected))
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else [])
        raise InputValidationError(
            f"{source}: inputs do not match the model interface ({'; '.join(parts)}); expected exactly {expected}"
        )
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        value = np.asarray(inputs[spec.name])
        if tuple(value.shape) != spec.shape:
            raise InputValidationError(
                f"{source}: input '{spec.name}' has shape {tuple(value.shape)}, the model expects {spec.shape}"
            )
        want = np.dtype(spec.dtype)
        if value.dtype != want:
            same_kind = (value.dtype.kind == want.kind == "f") or (value.dtype.kind in "iu" and want.kind in "iu")
            if not same_kind:
                raise InputValidationError(
                    f"{source}: input '{spec.name}' has dtype {value.dtype}, the model expects {spec.dtype}"
                )
            value = value.astype(want)
        if want.kind == "f" and not np.isfinite(value).all():
            bad = int(np.size(value) - np.isfinite(value).sum())
            raise InputValidationError(f"{source}: input '{spec.name}' contains {bad} NaN/inf values")
        out[spec.name] = np.ascontiguousarray(value)
    return out


__all__ = [
    "InputValidationError",
    "RECURRENT_OUTPUT",
    "TRAJECTORY_OUTPUTS",
    "TensorSpec",
    "example_inputs",
    "planner_input_specs",
    "planner_output_names",
    "validate_inputs",
]
