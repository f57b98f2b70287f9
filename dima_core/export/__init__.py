"""Deployment of the vision-only planner: ONNX export with a sidecar, TensorRT engines with a safe cache, and the
runtime backends (torch, onnxruntime, tensorrt) behind one interface.

- :mod:`~dima_core.export.io_spec`: the batch-1 input/output interface and per-frame input validation
- :mod:`~dima_core.export.onnx_export`: ``export_onnx`` (checker, parity vs PyTorch, sidecar)
- :mod:`~dima_core.export.sidecar`: ``<model>.onnx.json``, checked by every runtime at load
- :mod:`~dima_core.export.engine_cache`: engine cache key, atomic writes, hit/build/rebuild decisions
- :mod:`~dima_core.export.tensorrt_engine`: TensorRT build (lazy ``tensorrt`` import), precision policy
- :mod:`~dima_core.export.backends`: ``PlannerBackend``, ``BackendConfig``, ``create_backend``

Nothing here imports ``tensorrt`` at import time; torch and onnx are imported by the modules that need them.
"""

from dima_core.export.backends import (
    BACKEND_NAMES,
    BackendConfig,
    PlannerBackend,
    available_backends,
    build_backend,
    create_backend,
    unavailable_reason,
)
from dima_core.export.engine_cache import CacheDecision, EngineCache, EngineKey
from dima_core.export.errors import BackendUnavailableError, EngineBuildError
from dima_core.export.io_spec import InputValidationError, TensorSpec, planner_input_specs, planner_output_names
from dima_core.export.sidecar import ModelSidecar, SidecarError, load_sidecar

__all__ = [
    "BACKEND_NAMES",
    "BackendConfig",
    "BackendUnavailableError",
    "CacheDecision",
    "EngineBuildError",
    "EngineCache",
    "EngineKey",
    "InputValidationError",
    "ModelSidecar",
    "PlannerBackend",
    "SidecarError",
    "TensorSpec",
    "available_backends",
    "build_backend",
    "create_backend",
    "load_sidecar",
    "planner_input_specs",
    "planner_output_names",
    "unavailable_reason",
]
