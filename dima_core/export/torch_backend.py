"""PyTorch eager backend (CPU or CUDA): the reference the exported backends are compared against."""

from __future__ import annotations

import os

import numpy as np
import torch

from dima_core.export.backends import PlannerBackend
from dima_core.export.io_spec import planner_input_specs, planner_output_names
from dima_core.export.planner_loading import load_planner
from dima_core.export.planner_module import DeploymentPlanner, positional_args
from dima_core.export.precision import check_precision

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend(PlannerBackend):
    """The :class:`~dima_core.export.planner_module.DeploymentPlanner` of a checkpoint, under ``inference_mode``.

    Same inputs and output names as an ONNX export of the same model with the same ``with_beam``. ``threads`` > 0
    sets torch's intra-op threads for the whole process (torch has no per-module setting).

    ``precision`` bf16 (cpu, cuda) or fp16 (cuda) runs the forward under ``torch.autocast`` with that dtype: matmuls
    and convolutions in half precision, the ops autocast keeps in fp32 (softmax, norms, reductions) in fp32; weights
    stay fp32 and every output is returned as float32, so callers see the same dtypes at every precision. bf16 pays
    off on CPUs with native bf16 (AVX-512 BF16 / AMX); on an AVX2-only CPU it is emulated and several times slower
    than fp32 (measured in docs/export.md).
    """

    name = "torch"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        model_config: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        with_beam: bool = False,
        threads: int = 0,
        seed: int = 0,
        precision: str = "fp32",
    ) -> None:
        super().__init__(device)
        check_precision(self.name, precision, device)
        self.precision = "fp32" if precision == "auto" else precision
        self.checkpoint = checkpoint
        self.model_config_path = model_config
        self.with_beam = with_beam
        self.threads = threads
        self.seed = seed
        self.module: DeploymentPlanner | None = None
        self.source: dict[str, object] = {}

    def _load(self) -> None:
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        loaded = load_planner(self.checkpoint, self.model_config_path, seed=self.seed)
        self.model_config = loaded.config
        self.source = loaded.source
        self.input_specs = planner_input_specs(loaded.config)
        self.output_names = planner_output_names(loaded.config, self.with_beam)
        self.module = DeploymentPlanner(loaded.model, self.output_names).to(self.device).eval()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.module is not None
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        with torch.inference_mode(), torch.autocast(self.device, dtype=dtype, enabled=dtype is not None):
            outputs = self.module(*positional_args(feeds, self.device)[1])
            # .cpu() synchronises with the CUDA stream, so the measured latency is the real one. Half-precision
            # outputs go back to float32: the interface's dtype (and numpy has no bfloat16).
            return {
                name: (t.float() if t.is_floating_point() else t).cpu().numpy()
                for name, t in zip(self.output_names, outputs, strict=True)
            }

    def describe(self) -> str:
        return super().describe() if self.precision == "fp32" else f"torch {self.precision} autocast on {self.device}"

    def close(self) -> None:
        self.module = None
        if self.device == "cuda":
            torch.cuda.empty_cache()
        super().close()


__all__ = ["TorchBackend"]
