"""Process-group setup from torchrun's environment, and the few collectives the trainer needs.

torchrun (``torch.distributed.run``) exports ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` to every worker; a plain ``python -m dima_core.cli train`` has none of them and runs as a single
process with no process group at all. Backend: NCCL when the process trains on CUDA, gloo on CPU (the CI test runs
two CPU processes with gloo).

Only rank 0 logs at INFO, draws the progress bar, writes TensorBoard events and checkpoints; metrics are averaged
over ranks before they are logged so the numbers describe the global batch.

FSDP (``distributed.strategy: fsdp``) changes two things here. Its parameters are DTensors on a device mesh, which
needs a process group even for one process, so a single-process FSDP run joins a one-rank group (an in-memory
store: no ports, no torchrun). And with ``fsdp.cpu_offload`` on CUDA the sharded parameters and gradients live on
the CPU, so the trainer's reductions over gradients (the clipping norm, the unused-gradient check) run on CPU
tensors: the group then gets gloo for CPU tensors next to NCCL for CUDA tensors (``cpu:gloo,cuda:nccl``).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dima_core.training.config import DistributedConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job and which device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = ""  # "" when no process group exists (single process without FSDP)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, draws and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one rank: metrics, buffers and objects must be exchanged."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def resolve_device(requested: str, local_rank: int) -> torch.device:
    """``auto`` -> this rank's CUDA device when CUDA exists, else CPU; ``cuda`` without CUDA is an error."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device (use device: auto or cpu)")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(f"LOCAL_RANK {local_rank} but only {count} CUDA devices: --nproc_per_node is too large")
    return torch.device("cuda", local_rank)


def process_group_backend(device: torch.device, distributed: DistributedConfig | None = None) -> str:
    """gloo on CPU; NCCL on CUDA, plus gloo for CPU tensors when FSDP offloads shards to the CPU."""
    if device.type != "cuda":
        return "gloo"
    if distributed is not None and distributed.strategy == "fsdp" and distributed.fsdp.cpu_offload:
        return "cpu:gloo,cuda:nccl"
    return "nccl"


def init_distributed(
    requested_device: str = "auto", timeout_s: float = 1800.0, distributed: DistributedConfig | None = None
) -> DistContext:
    """Read torchrun's variables, pick the device, and join the process group when ``WORLD_SIZE > 1`` (or when
    ``distributed.strategy`` is ``fsdp``: a one-rank group for a single process, module docstring)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} outside WORLD_SIZE={world_size}")
    device = resolve_device(requested_device, local_rank)
    if device.type == "cuda":
        # NCCL and every .cuda() call default to the current device; without this all ranks pile onto GPU 0.
        torch.cuda.set_device(device)
    fsdp = distributed is not None and distributed.strategy == "fsdp"
    backend = process_group_backend(device, distributed)
    timeout = datetime.timedelta(seconds=timeout_s)
    if world_size == 1:
        if not fsdp:
            return DistContext(rank=0, world_size=1, local_rank=local_rank, device=device, backend="")
        if not dist.is_initialized():
            # A private in-memory store: a one-rank group needs no rendezvous, so this works with or without
            # torchrun and never collides with another job's port.
            dist.init_process_group(
                backend=backend,
                store=dist.HashStore(),
                rank=0,
                world_size=1,
                timeout=timeout,
                device_id=device if device.type == "cuda" else None,
            )
        log.info("one-rank process group for FSDP (backend %s, device %s): nothing is sharded", backend, device)
        return DistContext(rank=0, world_size=1, local_rank=local_rank, device=device, backend=backend)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world_size} but {name} is unset: launch with torchrun")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)
    log.info(
        "process group up: rank %d/%d (local %d), backend %s, device %s", rank, world_size, local_rank, backend, device
    )
    return ctx


def cleanup_distributed() -> None:
    """Leave the process group (idempotent), so the interpreter exits without NCCL/gloo warnings."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if ctx.distributed:
        if ctx.device.type == "cuda" and "nccl" in ctx.backend:
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_reduce_mean(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Average scalar metrics over ranks (one collective for all keys; every rank must pass the same keys)."""
    if not ctx.distributed or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= ctx.world_size
    return {k: float(v) for k, v in zip(keys, tensor.tolist(), strict=True)}


def all_reduce_sum(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """Sum scalars over ranks (for sums and counts that are divided afterwards: exact global means)."""
    if not ctx.distributed or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {k: float(v) for k, v in zip(keys, tensor.tolist(), strict=True)}


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank.

    DDP does this at the start of each training forward; evaluation calls the unwrapped module, so without it each
    rank would evaluate with the statistics of its own last batch. FSDP does not touch buffers at all, so the
    trainer calls this at the start of every FSDP step, as DDP would. One broadcast per (device, dtype): the 7B
    configuration has a few hundred small buffers.
    """
    if not ctx.distributed:
        return
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for buffer in module.buffers():
        groups.setdefault((buffer.device, buffer.dtype), []).append(buffer)
    for buffers in groups.values():
        flat = torch.cat([b.detach().reshape(-1) for b in buffers])
        dist.broadcast(flat, src=0)
        offset = 0
        for buffer in buffers:
            buffer.data.copy_(flat[offset : offset + buffer.numel()].view_as(buffer))
            offset += buffer.numel()


def all_gather_objects(obj: object, ctx: DistContext) -> list[object]:
    """Every rank's ``obj`` in rank order (a list of one object in a single process)."""
    if not ctx.distributed:
        return [obj]
    gathered: list[object] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def configure_rank_logging(ctx: DistContext, verbose: bool = False) -> None:
    """INFO (or DEBUG) on rank 0, WARNING elsewhere, rank in every line: one readable log for N processes."""
    root = logging.getLogger()
    level = (logging.DEBUG if verbose else logging.INFO) if ctx.is_main else logging.WARNING
    root.setLevel(level)
    if ctx.distributed:
        prefix = f"[rank {ctx.rank}] "
        for handler in root.handlers:
            fmt = handler.formatter._fmt if handler.formatter is not None else "%(message)s"  # noqa: SLF001
            if fmt is not None and not fmt.startswith("[rank"):
                handler.setFormatter(logging.Formatter(prefix + fmt))


__all__ = [
    "DistContext",
    "all_gather_objects",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "cleanup_distributed",
    "configure_rank_logging",
    "init_distributed",
    "process_group_backend",
    "resolve_device",
]
