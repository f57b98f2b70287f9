"""Build (or find in the cache) a TensorRT engine for an exported ONNX planner, with the tensorrt Python API.

Precision policy (TensorRT 11 removed weak typing and with it ``BuilderFlag.FP16``):

- **Default and recommended: TensorRT 10** (the ``tensorrt`` extra pins ``tensorrt-cu12>=10,<11``). The ONNX graph
  stays fp32 and ``--precision fp16`` sets ``BuilderFlag.FP16``: TensorRT runs each layer in fp16 where it has a
  faster fp16 kernel and keeps fp32 elsewhere, inputs and outputs stay fp32, and one ONNX file serves every
  backend and precision. This is also what Autoware's TensorRT VAD uses.
- **TensorRT >= 11** is supported for fp32: the network is built strongly typed (the only mode there) from the
  fp32 graph. fp16 under TensorRT 11 needs the precision baked into the ONNX (NVIDIA's answer is ModelOpt AutoCast);
  the pip-installable converter (onnxconverter-common float16) produces a graph onnxruntime rejects for this model,
  so an fp16 graph could not be parity-checked and is not offered; asking for fp16 under TensorRT 11 fails with
  this explanation instead of silently building fp32.

The typing mode is part of the cache key, so upgrading TensorRT 10 -> 11 never serves a weakly typed plan.
``tensorrt`` is imported lazily: this module imports on machines without it, and everything except the build
itself is unit-tested there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from dima_core.export.build_progress import BuildHeartbeat
from dima_core.export.engine_cache import CacheDecision, EngineCache, EngineKey
from dima_core.export.errors import BackendUnavailableError, EngineBuildError
from dima_core.export.sidecar import ModelSidecar, load_sidecar

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16"]
DEFAULT_WORKSPACE_GIB = 4.0
INSTALL_HINT = (
    "install with pip install '.[tensorrt]' (TensorRT 10 for CUDA 12) on a machine with an NVIDIA GPU and driver"
)


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or :class:`BackendUnavailableError` saying how to get it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"tensorrt backend requested but the tensorrt Python package is not installed; {INSTALL_HINT}"
        ) from exc
    return tensorrt


@dataclass(frozen=True)
class TrtEnvironment:
    """The parts of the machine an engine is tied to."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    @property
    def tensorrt_major(self) -> int:
        return int(self.tensorrt_version.split(".")[0])


def current_environment(device_index: int = 0) -> TrtEnvironment:
    """TensorRT version and the CUDA device's name and compute capability (via torch, which we need anyway)."""
    trt = import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "tensorrt backend requested but no CUDA GPU is visible to torch "
            "(torch.cuda.is_available() is False: CPU-only torch build, no driver, or "
            "CUDA_VISIBLE_DEVICES empty)"
        )
    major, minor = torch.cuda.get_device_capability(device_index)
    return TrtEnvironment(str(trt.__version__), torch.cuda.get_device_name(device_index), f"{major}.{minor}")


def typing_mode(tensorrt_major: int) -> Literal["weak", "strong"]:
    """Network typing: weak (precision by builder flags) before TensorRT 11, strong (precision from the graph) after."""
    return "strong" if tensorrt_major >= 11 else "weak"


def check_precision(tensorrt_major: int, precision: str, onnx_precision: str) -> None:
    """Refuse combinations this TensorRT cannot honour (see the module docstring)."""
    if precision not in ("fp32", "fp16"):
        raise EngineBuildError(f"unknown TensorRT precision {precision!r}: choose fp32 or fp16")
    if onnx_precision == "int8":
        raise EngineBuildError(
            "this ONNX model is the int8 (QDQ) graph calibrated for onnxruntime's CPU provider; TensorRT engines are "
            "built from the fp32 export (dima export --format onnx without --precision int8)"
        )
    if tensorrt_major >= 11 and precision != onnx_precision:
        raise EngineBuildError(
            f"TensorRT {tensorrt_major} builds strongly typed networks only (the FP16 builder flag is gone), and this "
            f"ONNX model is {onnx_precision}: a {precision} engine cannot be built from it. Use --precision "
            f"{onnx_precision}, or install TensorRT 10 (pip install '.[tensorrt]', which pins tensorrt-cu12<11) for "
            "fp16 engines"
        )


def engine_key(sidecar: ModelSidecar, env: TrtEnvironment, precision: Precision) -> EngineKey:
    return EngineKey(
        tensorrt_version=env.tensorrt_version,
        gpu_name=env.gpu_name,
        compute_capability=env.compute_capability,
        precision=precision,
        typing=typing_mode(env.tensorrt_major),
        inputs=sidecar.inputs,
        onnx_sha256=sidecar.onnx_sha256,
    )


def _make_logger(trt: ModuleType) -> Any:
    """A TensorRT logger forwarding to Python logging and keeping error messages for the exception text."""

    class _Logger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()


def build_serialized_engine(onnx_path: Path, precision: Precision, typing: str, workspace_gib: float) -> bytes:
    """Parse ``onnx_path`` and build a serialized plan (TensorRT 10 and 11 Python API)."""
    trt = import_tensorrt()
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if typing == "strong" and int(str(trt.__version__).split(".")[0]) < 11:
        # TensorRT 10 opts in to strong typing by flag; in 11 it is the only mode and needs no flag.
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    # Explicit batch is the only (and default) mode since TensorRT 10, so no EXPLICIT_BATCH flag.
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: " + "; ".join(errors or logger.errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16" and typing == "weak":
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # fp32 means fp32: TF32 (on by default on Ampere+) would trade 3 decimal digits for speed silently.
        config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        detail = "; ".join(logger.errors[-5:]) or "no error message from TensorRT"
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path} ({precision}, workspace {workspace_gib:g} GiB): "
            f"{detail}. 'Could not find any implementation for node' or out-of-memory messages usually mean the GPU "
            f"ran out of memory or the workspace is too small: free GPU memory (other processes), or change "
            f"--workspace-gib (larger if it is too small, smaller if the GPU is shared)"
        )
    return bytes(serialized)


@dataclass(frozen=True)
class EngineArtifact:
    path: Path
    key: EngineKey
    decision: CacheDecision
    sidecar: ModelSidecar


def ensure_engine(
    onnx_path: str | os.PathLike[str],
    precision: Precision = "fp16",
    engine_dir: str | os.PathLike[str] | None = None,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    heartbeat_seconds: float = 5.0,
) -> EngineArtifact:
    """The engine for ``onnx_path`` at ``precision`` on this GPU: from the cache, or built (loudly) and cached."""
    onnx_path = Path(onnx_path)
    sidecar = load_sidecar(onnx_path)  # verifies the ONNX hash: the key must describe the file actually built
    env = current_environment()
    check_precision(env.tensorrt_major, precision, sidecar.precision)
    key = engine_key(sidecar, env, precision)
    cache = EngineCache(engine_dir)
    stem = onnx_path.name[: -len(".onnx")] if onnx_path.name.endswith(".onnx") else onnx_path.name

    def build() -> bytes:
        label = (
            f"building TensorRT engine for {onnx_path.name} ({precision}, {key.typing} typing, TensorRT "
            f"{env.tensorrt_version}, {env.gpu_name}) into {cache.directory}"
        )
        with BuildHeartbeat(
            label,
            interval=heartbeat_seconds,
            logger=log,
            hint="this can take minutes; prebuild with `dima export --format tensorrt --build-only`",
        ):
            return build_serialized_engine(onnx_path, precision, key.typing, workspace_gib)

    path, decision = cache.get_or_build(
        stem, key, build, extra_meta={"onnx_file": str(onnx_path.resolve()), "workspace_gib": workspace_gib}
    )
    return EngineArtifact(path, key, decision, sidecar)


__all__ = [
    "DEFAULT_WORKSPACE_GIB",
    "EngineArtifact",
    "TrtEnvironment",
    "build_serialized_engine",
    "check_precision",
    "current_environment",
    "engine_key",
    "ensure_engine",
    "import_tensorrt",
    "typing_mode",
]
