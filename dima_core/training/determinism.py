"""Seeding and RNG state: what makes a run repeatable and a resumed run identical to an uninterrupted one.

Three kinds of randomness touch training:
- the main process's global generators (Python ``random``, NumPy, torch CPU and CUDA): model init, dropout, any
  random op in the loss. :func:`seed_everything` seeds them; :func:`capture_rng_state` / :func:`restore_rng_state`
  carry them through a checkpoint.
- the data order: the sampler derives it from ``(seed, epoch)`` alone (see sampler.py), so it needs no saved state
  beyond the epoch and the position in it.
- DataLoader workers: each worker's torch seed is ``base_seed + worker_id`` where ``base_seed`` is drawn from the
  loader's generator when an epoch's iterator starts. :func:`epoch_generator` makes that generator a function of
  ``(seed, epoch)`` and :func:`seed_worker` forwards the worker's torch seed to Python and NumPy, so augmentation
  in workers is repeatable per epoch.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels.

    ``deterministic`` turns on ``torch.use_deterministic_algorithms`` (ops without a deterministic implementation
    then raise instead of silently varying), disables cuDNN autotuning and sets ``CUBLAS_WORKSPACE_CONFIG``,
    which cuBLAS needs for reproducible matmuls on CUDA >= 10.2.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        log.info("deterministic algorithms enabled (seed %d)", seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive Python/NumPy seeds from the worker's torch seed; one thread per worker.

    torch seeds each worker with ``base_seed + worker_id`` but leaves Python and NumPy alone, so without this
    every worker (and every epoch, with forked workers) would share the parent's NumPy stream.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    # Workers share the machine with the trainer and with each other; intra-op threads would oversubscribe it.
    torch.set_num_threads(1)


def epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """A CPU generator for one epoch's DataLoader iterator (worker base seeds), a function of seed, epoch and rank."""
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch * 1009 + rank) % 2**63)
    return generator


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG state of this process, as tensors and plain Python values (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    python_state = state["python"]
    # A state that went through a checkpoint may come back with lists where random.setstate wants tuples.
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning(
                "checkpoint holds CUDA RNG states for %d devices, this process sees %d: CUDA RNG not restored",
                len(cuda_states),
                torch.cuda.device_count(),
            )


__all__ = ["capture_rng_state", "epoch_generator", "restore_rng_state", "seed_everything", "seed_worker"]
