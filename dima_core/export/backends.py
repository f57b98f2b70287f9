"""Runtime backends of the vision planner: one interface, three implementations, chosen by configuration.

=============  =========================================  ==============================================================
backend        runs                                       loads from
=============  =========================================  ==============================================================
torch          PyTorch eager, CPU or CUDA                 a training checkpoint (or a model YAML: random weights)
onnxruntime    onnxruntime, CPU (CUDA EP when installed)  an exported ONNX file + its sidecar
tensorrt       TensorRT engine, CUDA                      an exported ONNX file + sidecar; engine from the cache
=============  =========================================  ==============================================================

Every backend exposes the same frame interface (:mod:`dima_core.export.io_spec`): ``infer({name: array})`` validates
the frame against ``input_specs`` (names, shapes, dtypes, NaN/inf) and returns ``{output name: array}`` on the
host. ``load()`` then ``warmup(n)`` happen in :func:`create_backend`, so the first real frame does not pay for lazy
allocation, cuDNN/TensorRT tactic selection or onnxruntime's graph optimisation.

Each backend runs one precision (:mod:`dima_core.export.precision`: torch fp32/bf16 autocast, onnxruntime an fp32
or int8 file, tensorrt an fp16/fp32 engine); a precision the backend does not have, or a model file of another
precision than the configured one, is refused with :class:`~dima_core.export.precision.PrecisionError`.

Asking for a backend that cannot run here (package not installed, no GPU, no CUDA execution provider) raises
:class:`~dima_core.export.errors.BackendUnavailableError` naming what is missing; there is no silent fallback to
another backend or device, because a planner that quietly runs 20x slower than budgeted is worse than one that
refuses to start.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from dima_core.config import ranged
from dima_core.export.errors import BackendUnavailableError
from dima_core.export.io_spec import TensorSpec, example_inputs, validate_inputs
from dima_core.export.precision import PrecisionName, check_precision, resolve_precision
from dima_core.models.config import ModelConfig

log = logging.getLogger(__name__)

BACKEND_NAMES: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
BackendName = Literal["torch", "onnxruntime", "tensorrt"]


@dataclass
class BackendConfig:
    """Which backend to run and where its model comes from (typed; loadable from YAML like every config here).

    ``device`` None means the backend's natural device: cpu for torch and onnxruntime, cuda for tensorrt.
    """

    backend: BackendName = "onnxruntime"
    device: Literal["cpu", "cuda"] | None = None
    checkpoint: str | None = None  # torch: training checkpoint file or run directory
    model_config: str | None = None  # torch without checkpoint: model YAML, random weights (benchmarks/tests)
    onnx: str | None = None  # onnxruntime / tensorrt: exported model (its .onnx.json sidecar next to it)
    with_beam: bool = False  # torch: also return the BEAM outputs (ONNX backends: decided at export time)
    # torch: autocast dtype (fp32, bf16; fp16 on cuda); onnxruntime: the model file's precision (fp32, int8), refused
    # when the sidecar says otherwise; tensorrt: engine precision (fp16, fp32). auto: torch fp32, onnxruntime the
    # file's own, tensorrt fp16 (dima_core.export.precision).
    precision: PrecisionName = "auto"
    engine_dir: str | None = None  # tensorrt engine cache; None: $DIMA_ENGINE_CACHE or ~/.cache/dima/engines
    workspace_gib: float = ranged(4.0, lo=0.0625, hi=256.0, help="TensorRT builder workspace limit")
    threads: int = ranged(0, lo=0, hi=256, help="CPU threads (torch / onnxruntime); 0 = library default")
    warmup_iters: int = ranged(3, lo=0, hi=1000, help="inferences run after load, before the first frame")
    seed: int = 0  # random weights of a model_config-only torch backend

    def validate(self) -> None:
        if self.backend == "torch" and (self.checkpoint is None) == (self.model_config is None):
            raise ValueError("the torch backend needs exactly one of checkpoint or model_config")
        if self.backend in ("onnxruntime", "tensorrt") and not self.onnx:
            raise ValueError(f"the {self.backend} backend needs onnx: an exported model (dima export --format onnx)")
        if self.backend == "tensorrt" and self.device == "cpu":
            raise ValueError("the tensorrt backend runs on cuda only; leave device unset or set it to cuda")
        check_precision(self.backend, self.precision, self.resolved_device)

    @property
    def resolved_device(self) -> str:
        if self.device is not None:
            return self.device
        return "cuda" if self.backend == "tensorrt" else "cpu"


class PlannerBackend(abc.ABC):
    """Load once, warm up, then ``infer`` one frame at a time (batch 1)."""

    name: ClassVar[str]

    def __init__(self, device: str) -> None:
        self._device = device
        self.input_specs: tuple[TensorSpec, ...] = ()
        self.output_names: tuple[str, ...] = ()
        self.model_config: ModelConfig | None = None
        self.precision = "fp32"  # what runs (set by the backend; onnxruntime's is known once the sidecar is read)
        self.loaded = False

    @property
    def device(self) -> str:
        return self._device

    def load(self) -> None:
        """Load the model (idempotent); sets ``input_specs``, ``output_names`` and ``model_config``."""
        if not self.loaded:
            self._load()
            self.loaded = True

    def warmup(self, n: int = 3) -> list[float]:
        """Run ``n`` inferences on plausible inputs; returns their wall times in ms (the first is the spike)."""
        self.load()
        assert self.model_config is not None
        inputs = example_inputs(self.model_config, self.input_specs, seed=0)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.infer(inputs)
            times.append((time.perf_counter() - t0) * 1000.0)
        if times:
            log.info("%s backend warm-up on %s: %s ms", self.name, self.device, ", ".join(f"{t:.1f}" for t in times))
        return times

    def infer(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Validate one frame against ``input_specs`` and run it; outputs are host numpy arrays."""
        if not self.loaded:
            raise RuntimeError(f"{self.name} backend: call load() before infer()")
        feeds = validate_inputs(inputs, self.input_specs, f"{self.name} backend")
        return self._run(feeds)

    def close(self) -> None:
        """Release the model (GPU memory); the backend can be loaded again."""
        self.loaded = False

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def describe(self) -> str:
        return (
            f"{self.name} on {self.device}"
            if self.precision == "fp32"
            else (f"{self.name} {self.precision} on {self.device}")
        )


def unavailable_reason(backend: str, device: str | None = None) -> str | None:
    """Why ``backend`` cannot run here on ``device`` (None: it can). Cheap: imports, no model loading."""
    if backend not in BACKEND_NAMES:
        return f"unknown backend {backend!r}; choose one of {list(BACKEND_NAMES)}"
    if backend == "torch":
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return (
                    "torch backend requested on cuda but torch sees no CUDA GPU (CPU-only torch build, no NVIDIA "
                    "driver, or CUDA_VISIBLE_DEVICES empty)"
                )
        return None
    if backend == "onnxruntime":
        try:
            import onnxruntime
        except ImportError:
            return (
                "onnxruntime backend requested but the onnxruntime Python package is not installed; install "
                "with pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"
            )
        if device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return (
                "onnxruntime backend requested on cuda but the CUDAExecutionProvider is not available "
                f"(providers: {onnxruntime.get_available_providers()}); install onnxruntime-gpu instead of "
                "onnxruntime on a machine with an NVIDIA GPU, or use device cpu"
            )
        return None
    # tensorrt
    from dima_core.export.tensorrt_engine import current_environment

    try:
        current_environment()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def available_backends(device: str | None = None) -> dict[str, str | None]:
    """``{backend: None if it can run here, else the reason}`` for every backend."""
    return {name: unavailable_reason(name, device if name != "tensorrt" else "cuda") for name in BACKEND_NAMES}


def build_backend(config: BackendConfig) -> PlannerBackend:
    """The backend object for ``config``, not loaded. Raises :class:`BackendUnavailableError` if it cannot run."""
    config.validate()
    device = config.resolved_device
    reason = unavailable_reason(config.backend, device)
    if reason is not None:
        raise BackendUnavailableError(reason)
    if config.backend == "torch":
        from dima_core.export.torch_backend import TorchBackend

        return TorchBackend(
            checkpoint=config.checkpoint,
            model_config=config.model_config,
            device=device,
            with_beam=config.with_beam,
            threads=config.threads,
            seed=config.seed,
            precision=resolve_precision("torch", config.precision),
        )
    if config.backend == "onnxruntime":
        from dima_core.export.ort_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(
            config.onnx,
            device=device,
            threads=config.threads,  # type: ignore[arg-type]
            precision=config.precision,
        )
    from dima_core.export.trt_backend import TensorRTBackend

    return TensorRTBackend(
        config.onnx,
        precision=resolve_precision("tensorrt", config.precision),  # type: ignore[arg-type]
        engine_dir=config.engine_dir,
        workspace_gib=config.workspace_gib,
    )


def create_backend(config: BackendConfig | None = None, **overrides: Any) -> PlannerBackend:
    """Build, load and warm up a backend: ``create_backend(backend="onnxruntime", onnx="m.onnx")``.

    ``overrides`` are :class:`BackendConfig` fields (validated like a YAML config).
    """
    from dima_core.config import config_from_dict, config_to_dict

    base = config_to_dict(config) if config is not None else {}
    config = config_from_dict({**base, **overrides}, BackendConfig, source="create_backend")
    backend = build_backend(config)
    t0 = time.perf_counter()
    backend.load()
    log.info("%s loaded in %.2f s", backend.describe(), time.perf_counter() - t0)
    backend.warmup(config.warmup_iters)
    return backend


__all__ = [
    "BACKEND_NAMES",
    "BackendConfig",
    "BackendUnavailableError",
    "PlannerBackend",
    "available_backends",
    "build_backend",
    "create_backend",
    "unavailable_reason",
]
