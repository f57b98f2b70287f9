"""Typed training configuration (``config/train/*.yaml``), one dataclass tree loaded by :mod:`dima_core.config`.

    from dima_core.config import load_config
    from dima_core.training.config import TrainConfig
    cfg = load_config("config/train/stage1_dima_tiny.yaml", TrainConfig)

Defaults are VAD's optimiser recipe (research/papers.md section 2.2): AdamW lr 2e-4, weight decay 0.01, cosine
annealing with a 500-iteration linear warm-up starting at 1/3 of the lr, minimum lr ratio 1e-3, gradient clipping at
norm 35, batch 1 per GPU on 8 GPUs.

Mixed precision is a GPU feature, with one opt-in exception: ``precision: bf16`` plus ``cpu_bf16: true`` autocasts to
bf16 on a CPU (fast only where the CPU computes bf16 natively, AVX512-BF16/AMX; precision.py has the measured cost
of the emulation elsewhere). When the run lands on a CPU otherwise and ``precision`` is ``fp16`` or ``bf16`` the
trainer *falls back to fp32 and logs a WARNING* naming the requested and the effective precision (the effective one
is also stored in every checkpoint). We fall back rather than refuse so one cluster config can be smoke-tested on a
laptop; the log line keeps the substitution explicit.

Distribution (``distributed:``): ``strategy: ddp`` replicates the model on every rank (torch DDP, the default);
``strategy: fsdp`` shards parameters, gradients and optimiser state over the ranks with torch's FSDP2
(:mod:`dima_core.training.fsdp`), meant for the 7B LLM teacher of stage 2 (config/train/stage2_llava7b.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dima_core.config import ranged
from dima_core.data.config import DataConfig


@dataclass
class TrainDataConfig:
    """Which data the run reads. ``dataset`` holds the data layer's own config (dataroot, version, index, size)."""

    dataset: DataConfig = field(default_factory=DataConfig)
    train_split: str = ranged("train", help="split of the cached index (or synth_meta.json) the trainer fits")
    val_split: str | None = ranged("val", help="split the validation hook scores; None disables validation")
    batch_size: int = ranged(1, lo=1, hi=4096, help="samples per process (per GPU); VAD: 1 per GPU x 8 GPUs")
    num_workers: int = ranged(0, lo=0, hi=64, help="DataLoader worker processes per rank")
    cache_images: bool = ranged(
        False,
        help="decode every camera image once at the model's input size into <output_dir>/image_cache_<W>x<H> "
        "(built on first use, reused on resume) and train from it; dataset.image_cache names a shared cache instead",
    )
    pin_memory: bool = ranged(True, help="page-locked host memory for faster host-to-GPU copies (ignored on CPU)")
    drop_last: bool = ranged(
        True, help="drop the last incomplete batch so every step has the same size on every rank (DDP)"
    )


@dataclass
class OptimizerConfig:
    """AdamW. Norm and bias parameters get weight decay too, as in VAD (mmcv applies wd to all parameters)."""

    name: Literal["adamw"] = "adamw"
    lr: float = ranged(2e-4, lo=0.0, hi=10.0, help="peak learning rate (after warm-up)")
    weight_decay: float = ranged(0.01, lo=0.0, hi=10.0, help="decoupled weight decay")
    betas: tuple[float, float] = ranged((0.9, 0.999), lo=0.0, hi=1.0, help="Adam moment decay rates")
    eps: float = ranged(1e-8, lo=0.0, hi=1.0, help="Adam denominator epsilon")
    implementation: Literal["auto", "for_loop", "foreach", "fused"] = ranged(
        "auto",
        help="AdamW kernel: auto = torch's choice (per-tensor loop on CPU and for FSDP's DTensors); "
        "foreach = one multi-tensor op per step; fused = a single fused kernel (CPU and CUDA). Same update rule, "
        "float rounding differs",
    )


@dataclass
class ScheduleConfig:
    """Linear warm-up then cosine annealing, per optimiser step, with mmcv's semantics (see schedule.py)."""

    name: Literal["cosine"] = "cosine"
    warmup_iters: int = ranged(500, lo=0, hi=10_000_000, help="optimiser steps of linear warm-up")
    warmup_ratio: float = ranged(1.0 / 3.0, lo=0.0, hi=1.0, help="lr factor at the first warm-up step")
    min_lr_ratio: float = ranged(1e-3, lo=0.0, hi=1.0, help="final lr as a fraction of the peak lr")


@dataclass
class FSDPConfig:
    """FSDP2 settings (``distributed.fsdp``); how they map onto ``fully_shard``: dima_core/training/fsdp.py."""

    sharding: Literal["full", "hybrid", "grad_op"] = ranged(
        "full",
        help="full: parameters re-sharded after each unit's forward (ZeRO-3, least memory); grad_op: kept "
        "gathered from forward to backward (ZeRO-2, one all-gather less per unit); hybrid: full sharding inside "
        "groups of hybrid_shard_size ranks, replicated across groups (HSDP: all-gathers stay on a node's NVLink)",
    )
    hybrid_shard_size: int | None = ranged(
        None, lo=1, help="hybrid: ranks per shard group; None: torchrun's LOCAL_WORLD_SIZE (the GPUs of one node)"
    )
    cpu_offload: bool = ranged(
        False,
        help="keep sharded parameters, gradients and the AdamW step on the CPU (CUDA only; slower, for GPUs "
        "that cannot hold even the shards)",
    )
    param_dtype: Literal["bf16", "fp16", "fp32"] = ranged(
        "bf16",
        help="dtype the LLM's units are all-gathered and computed in (their stored shards keep their own "
        "dtype: frozen bf16 base, fp32 LoRA master weights); the planner, adapters and heads keep fp32 and the "
        "trainer's autocast ('precision'), as under DDP. CUDA only: on a CPU fp32 with a WARNING, like 'precision'",
    )
    reduce_dtype: Literal["bf16", "fp16", "fp32"] = ranged(
        "fp32", help="dtype in which the LLM units' (LoRA) gradients are reduce-scattered (fp32 on a CPU)"
    )
    wrap_llm_layers: bool = ranged(
        True,
        help="one FSDP unit per LLM decoder layer (classes named by the transformers model's "
        "_no_split_modules); false leaves the LLM in the root unit, which is then gathered whole (no memory saving)",
    )

    def validate(self) -> None:
        if self.hybrid_shard_size is not None and self.sharding != "hybrid":
            raise ValueError(f"hybrid_shard_size is set but sharding is '{self.sharding}' (it applies to 'hybrid')")


@dataclass
class DistributedConfig:
    """How the ranks of a torchrun job share the model (a single process ignores ``strategy: ddp``)."""

    strategy: Literal["ddp", "fsdp"] = ranged(
        "ddp",
        help="ddp: every rank holds the whole model; fsdp: parameters, gradients and optimiser state are "
        "sharded over the ranks (torch FSDP2; for the 7B LLM teacher)",
    )
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)


@dataclass
class TrainConfig:
    """One training run: what to train, on which data, how, and where its outputs go."""

    stage: int = ranged(1, lo=1, hi=2, help="1: vision planner alone; 2: joint with the MLLM teacher")
    model_config: str = ranged("config/model/dima_tiny.yaml", help="model YAML, relative to the repo root or absolute")
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    epochs: int = ranged(60, lo=1, hi=100_000, help="passes over the training split (DiMA stage 1 / VAD: 60)")
    max_steps: int | None = ranged(
        None, lo=1, help="stop after this many optimiser steps in total (smoke runs); None runs every epoch"
    )
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip_norm: float | None = ranged(35.0, lo=0.0, help="max global L2 gradient norm; None disables clipping")
    precision: Literal["off", "fp16", "bf16"] = ranged(
        "off",
        help="mixed precision on CUDA (and bf16 on a CPU with cpu_bf16); otherwise it falls back to fp32 with "
        "a WARNING (module docstring)",
    )
    cpu_bf16: bool = ranged(
        False,
        help="let precision bf16 autocast on a CPU: fast with native bf16 (AVX512-BF16/AMX), emulated and "
        "slower than fp32 on AVX2-only CPUs (precision.py)",
    )
    channels_last: bool = ranged(
        False,
        help="convolution weights and activations in NHWC memory layout (values unchanged; the kernels "
        "oneDNN/cuDNN pick differ, so rounding does)",
    )
    device: Literal["auto", "cpu", "cuda"] = ranged("auto", help="auto picks CUDA when available")
    find_unused_parameters: bool = ranged(
        False,
        help="tolerate parameters that get no gradient in a step on some rank (DDP's option of that name; "
        "FSDP reduce-scatters zeros for them); slower, only if the model needs it",
    )
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = ranged(0, lo=0, hi=2**31 - 1, help="base seed; rank r trains with seed + r")
    deterministic: bool = ranged(
        False, help="torch.use_deterministic_algorithms(True) and deterministic cuDNN (slower, bit-reproducible)"
    )
    output_dir: str = ranged("runs/stage1", help="checkpoints, TensorBoard events and the resolved config")
    checkpoint_interval: int = ranged(
        1000, lo=0, help="save every N optimiser steps (0: only at epoch ends and at the end)"
    )
    checkpoint_every_epoch: bool = ranged(True, help="also save at the end of every epoch")
    keep_checkpoints: int = ranged(3, lo=1, hi=10_000, help="step checkpoints kept on disk (the newest N)")
    log_interval: int = ranged(10, lo=1, help="optimiser steps between all-reduced scalar logs")
    resume: str | None = ranged(
        None, help="checkpoint file, or a run directory whose 'latest' pointer names one, to continue from"
    )
    init: str | None = ranged(None, help="checkpoint whose model weights initialise a fresh run (no optimiser)")
    tensorboard: bool = ranged(True, help="write TensorBoard scalars under <output_dir>/tensorboard")
    progress_bar: bool = ranged(True, help="tqdm bar on rank 0 (disabled automatically when stderr is not a TTY)")
    validate_every_epochs: int = ranged(1, lo=0, help="run the validation hook every N epochs (0: never)")

    def validate(self) -> None:
        if self.resume is not None and self.init is not None:
            raise ValueError("set either 'resume' (continue a run) or 'init' (weights only), not both")


def train_config_class(stage: int) -> type[TrainConfig]:
    """The config class a stage's YAML (and a checkpoint's stored config) is validated against."""
    if stage == 2:
        from dima_core.training.stage2 import Stage2TrainConfig  # imported lazily: it pulls in the MLLM code

        return Stage2TrainConfig
    if stage == 1:
        return TrainConfig
    raise ValueError(f"unknown training stage {stage} (stages: 1, 2)")


__all__ = [
    "DistributedConfig",
    "FSDPConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainDataConfig",
    "train_config_class",
]
