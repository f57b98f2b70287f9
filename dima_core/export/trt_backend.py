"""TensorRT backend: the cached engine of an exported ONNX planner, with torch CUDA tensors as I/O buffers.

Buffers are torch CUDA tensors rather than pycuda or cuda-python allocations: torch is already a dependency (and
initialises the CUDA context the engine runs in), its caching allocator and streams are what the rest of the stack
uses, and it avoids a second CUDA binding with its own context handling. Addresses are bound once at load (fixed
shapes), so a frame is: host->device copies, ``execute_async_v3`` on a private stream, device->host copies.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from dima_core.config import config_from_dict
from dima_core.export.backends import PlannerBackend
from dima_core.export.errors import EngineBuildError
from dima_core.export.io_spec import TensorSpec
from dima_core.export.sidecar import ModelSidecar, check_interface
from dima_core.export.tensorrt_engine import DEFAULT_WORKSPACE_GIB, EngineArtifact, ensure_engine, import_tensorrt
from dima_core.models.config import ModelConfig

log = logging.getLogger(__name__)


class TensorRTBackend(PlannerBackend):
    """Loads (building on a cache miss) the engine for ``onnx_path`` at ``precision`` and runs it on cuda:0."""

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        precision: str = "fp16",
        engine_dir: str | os.PathLike[str] | None = None,
        workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    ) -> None:
        super().__init__("cuda")
        self.onnx_path = Path(onnx_path)
        self.precision = precision
        self.engine_dir = engine_dir
        self.workspace_gib = workspace_gib
        self.artifact: EngineArtifact | None = None
        self.sidecar: ModelSidecar | None = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._buffers: dict[str, Any] = {}

    def _load(self) -> None:
        import torch

        trt = import_tensorrt()
        self.artifact = ensure_engine(
            self.onnx_path,
            self.precision,
            self.engine_dir,  # type: ignore[arg-type]
            self.workspace_gib,
        )
        self.sidecar = self.artifact.sidecar
        torch_types = {
            trt.DataType.FLOAT: torch.float32,
            trt.DataType.HALF: torch.float16,
            trt.DataType.INT32: torch.int32,
            trt.DataType.INT64: torch.int64,
            trt.DataType.BOOL: torch.bool,
        }
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self._engine = runtime.deserialize_cuda_engine(self.artifact.path.read_bytes())
        if self._engine is None:
            raise EngineBuildError(
                f"TensorRT could not deserialize {self.artifact.path} (see the TensorRT log above);"
                " delete it to force a rebuild"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineBuildError(
                f"TensorRT could not create an execution context for {self.artifact.path}: usually out of GPU memory"
            )
        inputs, outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            dtype = torch_types.get(self._engine.get_tensor_dtype(name))
            if dtype is None:
                raise EngineBuildError(
                    f"engine tensor {name} has unsupported dtype {self._engine.get_tensor_dtype(name)}"
                )
            spec = TensorSpec(name, shape, str(dtype).replace("torch.", ""))
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(spec)
            self._buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self._context.set_tensor_address(name, int(self._buffers[name].data_ptr()))
        # TensorRT orders I/O tensors by its own rules: compare by name, in the sidecar's order.
        order_in = {s.name: i for i, s in enumerate(self.sidecar.inputs)}
        order_out = {s.name: i for i, s in enumerate(self.sidecar.outputs)}
        inputs.sort(key=lambda s: order_in.get(s.name, len(order_in)))
        outputs.sort(key=lambda s: order_out.get(s.name, len(order_out)))
        check_interface(self.sidecar, tuple(inputs), tuple(outputs), f"TensorRT engine {self.artifact.path.name}")
        self._stream = torch.cuda.Stream()
        self.input_specs = self.sidecar.inputs
        self.output_names = self.sidecar.output_names
        self.model_config = config_from_dict(
            self.sidecar.model_config, ModelConfig, source=f"{self.onnx_path}.json (model_config)"
        )

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.cuda.stream(self._stream):
            for name, array in feeds.items():
                self._buffers[name].copy_(torch.from_numpy(array), non_blocking=False)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution failed for {self.onnx_path.name} (see the TensorRT log)")
            outputs = {name: self._buffers[name].to("cpu", non_blocking=False) for name in self.output_names}
        self._stream.synchronize()
        return {name: t.numpy() for name, t in outputs.items()}

    def close(self) -> None:
        self._buffers.clear()
        self._context = None
        self._engine = None
        super().close()

    def describe(self) -> str:
        engine = self.artifact.path.name if self.artifact else "?"
        return f"tensorrt {self.precision} on cuda ({engine})"


__all__ = ["TensorRTBackend"]
