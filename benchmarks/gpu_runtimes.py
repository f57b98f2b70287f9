"""The two torch runtimes ``dima bench gpu`` measures beside the torch backend's eager forward: ``torch.compile``
and a captured CUDA graph, as :class:`benchmarks.latency.Pipeline` builders so that they are timed by the same
:func:`benchmarks.latency._measure_cell` as every other cell.

Both run the torch backend's own module (:class:`~dima_core.export.planner_module.DeploymentPlanner`, the function
that is exported to ONNX) with its weights, its precision (``torch.autocast`` for bf16 / fp16, weights fp32) and its
per-frame work: the frame is validated against the input specs, copied to the device, run, and every output copied
back to the host as float32. A frame therefore costs what ``TorchBackend.infer`` costs, with the forward replaced:

- ``torch.compile``: the module compiled by TorchDynamo with ``compile_backend`` (inductor on a GPU machine; the
  test uses ``aot_eager``, which exercises the same capture on a CPU without building kernels). Compilation happens
  in the warm-up frames; its wall time is reported with the cell.
- CUDA graph: the forward captured once on static device tensors (``torch.cuda.graph``) after warm-up on a side
  stream, as PyTorch's documentation prescribes; a frame copies its inputs into the static tensors and replays the
  graph. CUDA only: there is no CPU graph to capture. The planner builds a few small constants per forward with
  ``torch.tensor([w, h], device=...)`` (image-size scales, a homogeneous row): on CUDA that is a host-to-device copy
  followed by a stream synchronisation, which a capturing stream refuses. :class:`DeviceConstants` records those
  constants during the warm-up and hands the same device tensors to the captured forward, so the eager model is
  captured unchanged (the values are Python numbers, identical at every frame).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.latency import BenchCase


@dataclass
class CompileOptions:
    """How ``torch.compile`` is called: ``backend`` (``inductor``, ``aot_eager``, ...) and ``mode`` (None: default,
    ``max-autotune-no-cudagraphs``, ...)."""

    backend: str = "inductor"
    mode: str | None = None


def _torch_backend(case: BenchCase) -> Any:
    """The cell's torch backend, built, loaded and warmed up exactly as the vision pipeline builds it."""
    from dima_core.export.backends import create_backend

    if case.backend_name != "torch":
        raise ValueError(f"{case.backend_name}: torch.compile and CUDA graphs run the torch backend only")
    return create_backend(
        backend="torch",
        device=case.device,
        threads=case.threads,
        warmup_iters=0,
        precision=case.precision,
        **case.torch_weights(),
    )


def _autocast(device: str, precision: str, cache_enabled: bool = True) -> Any:
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device, dtype=dtype, enabled=dtype is not None, cache_enabled=cache_enabled)


def _to_host(names: tuple[str, ...], outputs: tuple[Any, ...]) -> dict[str, np.ndarray]:
    """Outputs as float32 host arrays (``.cpu()`` synchronises with the CUDA stream: the latency is the real one)."""
    return {
        name: (t.float() if t.is_floating_point() else t).cpu().numpy() for name, t in zip(names, outputs, strict=True)
    }


class DeviceConstants:
    """A torch function mode that makes ``torch.tensor(<Python numbers>, ...)`` calls capturable.

    ``record()``: each such call runs and its result is kept, keyed by its data, dtype and device; ``replay()``: the
    kept tensor is returned instead of building a new one (a call not seen while recording is an error naming it).
    Only constants built from plain Python numbers are kept; any other call passes through unchanged. The kept
    tensors must not be written to: the planner only reads them (scales and offsets).
    """

    def __init__(self) -> None:
        self.tensors: dict[tuple[Any, ...], Any] = {}
        self.served = 0  # calls answered from the kept tensors while replaying

    def record(self) -> Any:
        return self._mode(replaying=False)

    def replay(self) -> Any:
        return self._mode(replaying=True)

    def _mode(self, replaying: bool) -> Any:
        import torch
        from torch.overrides import TorchFunctionMode

        owner = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's API
                kwargs = kwargs or {}
                if func is not torch.tensor or not args or not _plain_numbers(args[0]):
                    return func(*args, **kwargs)
                key = (
                    repr(args[0]),
                    str(kwargs.get("dtype")),
                    str(kwargs.get("device")),
                    args[1:],
                    tuple(sorted((k, str(v)) for k, v in kwargs.items() if k not in ("dtype", "device"))),
                )
                if replaying:
                    if key not in owner.tensors:
                        raise RuntimeError(
                            f"torch.tensor{key[:3]} was not seen during the warm-up: it cannot be "
                            "built inside a CUDA graph capture"
                        )
                    owner.served += 1
                    return owner.tensors[key]
                if key not in owner.tensors:
                    owner.tensors[key] = func(*args, **kwargs)
                return owner.tensors[key]

        return _Mode()


def _plain_numbers(data: Any) -> bool:
    """Whether ``data`` is a Python number or a (nested) list / tuple of them."""
    if isinstance(data, (bool, int, float)):
        return True
    return isinstance(data, (list, tuple)) and all(_plain_numbers(v) for v in data)


class CompiledPlanner:
    """The torch backend's module under ``torch.compile``; ``infer(inputs)`` as ``TorchBackend.infer``."""

    def __init__(self, backend: Any, options: CompileOptions) -> None:
        import torch

        self.backend = backend
        self.compiled = torch.compile(backend.module, backend=options.backend, mode=options.mode, dynamic=False)

    def infer(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        import torch

        from dima_core.export.io_spec import validate_inputs
        from dima_core.export.planner_module import positional_args

        feeds = validate_inputs(inputs, self.backend.input_specs, "torch.compile")
        with torch.inference_mode(), _autocast(self.backend.device, self.backend.precision):
            outputs = self.compiled(*positional_args(feeds, self.backend.device)[1])
            return _to_host(self.backend.output_names, outputs)


class CudaGraphPlanner:
    """The torch backend's module captured as one CUDA graph on static inputs shaped like ``example``."""

    def __init__(self, backend: Any, example: Mapping[str, Any], warmup: int = 3) -> None:
        import torch

        from dima_core.export.io_spec import validate_inputs
        from dima_core.export.planner_module import positional_args

        if backend.device != "cuda":
            raise ValueError(f"CUDA graphs need the torch backend on cuda, not {backend.device}")
        self.backend = backend
        feeds = validate_inputs(example, backend.input_specs, "CUDA graph")
        self.names, self.static_inputs = positional_args(feeds, "cuda")
        self.constants = DeviceConstants()
        module = backend.module
        # Warm-up on a side stream before capture (lazy initialisation, cuDNN/cuBLAS workspaces and algorithm
        # choice must not happen inside the graph), recording the forward's constants. Autocast's weight cache is
        # off: casts cached during capture would belong to the graph's private pool.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with (
            torch.cuda.stream(side),
            torch.inference_mode(),
            _autocast("cuda", backend.precision, False),
            self.constants.record(),
        ):
            for _ in range(max(1, warmup)):
                module(*self.static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with (
            torch.inference_mode(),
            _autocast("cuda", backend.precision, False),
            self.constants.replay(),
            torch.cuda.graph(self.graph),
        ):
            self.static_outputs = module(*self.static_inputs)

    def infer(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        import torch

        from dima_core.export.io_spec import validate_inputs

        feeds = validate_inputs(inputs, self.backend.input_specs, "CUDA graph")
        for name, static in zip(self.names, self.static_inputs, strict=True):
            if name in feeds:  # an input the graph prunes (ego_status without ego status) stays zeros
                static.copy_(torch.from_numpy(np.asarray(feeds[name])))
        self.graph.replay()
        return _to_host(self.backend.output_names, self.static_outputs)


def compile_pipeline(options: CompileOptions) -> Callable[[BenchCase], tuple[Callable[[], Any], str]]:
    """A ``Pipeline.build`` for the torch backend's module under ``torch.compile``."""

    def build(case: BenchCase) -> tuple[Callable[[], Any], str]:
        from dima_core.export.io_spec import example_inputs

        backend = _torch_backend(case)
        planner = CompiledPlanner(backend, options)
        inputs = example_inputs(backend.model_config, backend.input_specs, seed=1)
        t0 = time.perf_counter()
        warmup = max(1, case.warmup)
        for _ in range(warmup):  # the first call compiles
            planner.infer(inputs)
        mode = f", mode {options.mode}" if options.mode else ""
        return (lambda: planner.infer(inputs)), (
            f"torch.compile ({options.backend}{mode}) {backend.precision} on {backend.device}; compile + {warmup} "
            f"warm-up frame(s) {time.perf_counter() - t0:.1f} s"
        )

    return build


def cuda_graph_pipeline(case: BenchCase) -> tuple[Callable[[], Any], str]:
    """A ``Pipeline.build`` for the torch backend's module captured as a CUDA graph."""
    from dima_core.export.errors import BackendUnavailableError
    from dima_core.export.io_spec import example_inputs

    if case.device != "cuda":
        raise BackendUnavailableError("CUDA graphs need a CUDA device (this run is on the cpu)")
    backend = _torch_backend(case)
    inputs = example_inputs(backend.model_config, backend.input_specs, seed=1)
    planner = CudaGraphPlanner(backend, inputs, warmup=case.warmup)
    return (lambda: planner.infer(inputs)), f"torch CUDA graph {backend.precision} on cuda"


__all__ = [
    "CompileOptions",
    "DeviceConstants",
    "CompiledPlanner",
    "CudaGraphPlanner",
    "compile_pipeline",
    "cuda_graph_pipeline",
]
