"""onnxruntime backend: CPU, or the CUDA execution provider when ``onnxruntime-gpu`` is installed and requested."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from dima_core.config import config_from_dict
from dima_core.export.backends import PlannerBackend
from dima_core.export.errors import BackendUnavailableError
from dima_core.export.io_spec import TensorSpec
from dima_core.export.precision import check_model_precision, check_precision
from dima_core.export.sidecar import ModelSidecar, check_interface, load_sidecar
from dima_core.models.config import ModelConfig

log = logging.getLogger(__name__)

# onnxruntime's type strings -> numpy dtype names (the sidecar's vocabulary).
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
}


def _specs(args: Any) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(a.name, tuple(int(d) if isinstance(d, int) else -1 for d in a.shape), _ORT_TYPES.get(a.type, a.type))
        for a in args
    )


class OnnxRuntimeBackend(PlannerBackend):
    """An exported ONNX planner in an ``InferenceSession``, checked against its sidecar at load."""

    name = "onnxruntime"

    def __init__(
        self, onnx_path: str | os.PathLike[str], device: str = "cpu", threads: int = 0, precision: str = "auto"
    ) -> None:
        super().__init__(device)
        self.onnx_path = Path(onnx_path)
        self.threads = threads
        self.configured_precision = precision  # auto: whatever the file is (its sidecar says)
        self.session: Any = None
        self.sidecar: ModelSidecar | None = None

    def _load(self) -> None:
        import onnxruntime as ort

        self.sidecar = load_sidecar(self.onnx_path)
        # Before the session: a quantised file where fp32 was configured (or the reverse) never runs.
        check_model_precision(self.configured_precision, self.sidecar.precision, str(self.onnx_path))
        check_precision(self.name, self.sidecar.precision, self.device)
        self.precision = self.sidecar.precision
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads > 0:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda" else ["CPUExecutionProvider"]
        )
        self.session = ort.InferenceSession(str(self.onnx_path), opts, providers=providers)
        if self.device == "cuda" and self.session.get_providers()[0] != "CUDAExecutionProvider":
            # onnxruntime falls back to CPU when the CUDA provider fails to initialise (missing CUDA/cuDNN libs):
            # refuse rather than run silently on the CPU.
            raise BackendUnavailableError(
                f"onnxruntime could not start the CUDAExecutionProvider for {self.onnx_path} (session providers "
                f"{self.session.get_providers()}); check the CUDA and cuDNN libraries onnxruntime-gpu needs"
            )
        check_interface(
            self.sidecar,
            _specs(self.session.get_inputs()),
            _specs(self.session.get_outputs()),
            f"onnxruntime ({self.onnx_path.name})",
        )
        self.input_specs = self.sidecar.inputs
        self.output_names = self.sidecar.output_names
        self.model_config = config_from_dict(
            self.sidecar.model_config, ModelConfig, source=f"{self.onnx_path}.json (model_config)"
        )

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(list(self.output_names), feeds)
        return dict(zip(self.output_names, outputs, strict=True))

    def close(self) -> None:
        self.session = None
        super().close()


__all__ = ["OnnxRuntimeBackend"]
