"""``dima train``: train a stage from a YAML config, on one process or under torchrun (DDP or FSDP).

    dima train --stage 1 --config config/train/stage1_dima_tiny.yaml --dataroot data/synth --out runs/tiny
    dima train --stage 1 --config config/train/stage1_dima_tiny.yaml --resume runs/tiny        # continue a run
    torchrun --nproc_per_node 8 -m dima_core.cli train --stage 1 --config config/train/stage1_vad_tiny.yaml

Command-line values override the YAML and are validated like it. ``--resume`` takes a checkpoint file or a run
directory (its ``latest`` pointer); SIGTERM or SIGUSR1 (SLURM preemption) makes the run checkpoint after the
current step and exit 0, ready for ``--resume``. ``--init`` starts a new run from a checkpoint's weights only (how
stage 2 will start from stage 1). ``--max-steps`` stops early without changing the lr schedule, so a run stopped
with it and resumed ends exactly where the uninterrupted run would. Multi-GPU and multi-node runs: training/README.md.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: torch loads when a command runs, so `dima --help` stays fast
    from dima_core.training.config import TrainConfig
    from dima_core.training.distributed import DistContext
    from dima_core.training.trainer import Trainer, TrainResult

log = logging.getLogger(__name__)

STAGES = (1, 2)


def build_trainer(stage: int, config: TrainConfig, ctx: DistContext) -> Trainer:
    """The stage's Trainer (``config`` is a ``Stage2TrainConfig`` for stage 2). Imported lazily so that
    `dima --help` does not import torch."""
    if stage == 1:
        from dima_core.training.stage1 import build_stage1_trainer

        return build_stage1_trainer(config, ctx)
    from dima_core.training.stage2 import build_stage2_trainer

    return build_stage2_trainer(config, ctx)


def config_class(stage: int) -> type[TrainConfig]:
    """The TrainConfig (sub)class a stage's YAML is validated against."""
    from dima_core.training.config import train_config_class

    return train_config_class(stage)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train the planner (stage 1) or DiMA jointly with the MLLM teacher (stage 2); torchrun-ready",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stage", type=int, required=True, choices=STAGES, help="training stage")
    parser.add_argument("--config", required=True, help="training YAML (TrainConfig), e.g. config/train/*.yaml")
    parser.add_argument("--dataroot", default=None, help="dataset root (overrides data.dataset.dataroot)")
    parser.add_argument("--version", default=None, help="table version, e.g. v1.0-trainval (data.dataset.version)")
    parser.add_argument("--index", default=None, help="cached index from `dima data index` (data.dataset.index_path)")
    parser.add_argument("--model-config", default=None, help="model YAML (overrides model_config)")
    parser.add_argument("--train-split", default=None, help="split to train on (data.train_split)")
    parser.add_argument("--val-split", default=None, help="split to validate on; 'none' disables validation")
    parser.add_argument("--out", default=None, help="output directory (output_dir)")
    parser.add_argument("--resume", default=None, help="checkpoint file or run directory to continue")
    parser.add_argument("--init", default=None, help="checkpoint whose weights initialise a new run")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (sets the lr schedule length)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps in total")
    parser.add_argument("--batch-size", type=int, default=None, help="samples per process (data.batch_size)")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers per process")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="device (default: config)")
    parser.add_argument("--precision", choices=("off", "fp16", "bf16"), default=None, help="mixed precision")
    parser.add_argument(
        "--strategy",
        choices=("ddp", "fsdp"),
        default=None,
        help="how ranks share the model (distributed.strategy; FSDP settings: distributed.fsdp)",
    )
    parser.add_argument("--seed", type=int, default=None, help="base seed")
    parser.add_argument("--log-interval", type=int, default=None, help="steps between logged scalars")
    parser.add_argument("--checkpoint-interval", type=int, default=None, help="steps between checkpoints")
    parser.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard events")
    parser.set_defaults(func=run)
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """The YAML's TrainConfig with the command-line overrides applied and re-validated."""
    from dima_core.config import config_from_dict, config_to_dict, load_config
    from dima_core.training.stage1 import resolve_repo_path

    config_cls = config_class(args.stage)
    config = load_config(resolve_repo_path(args.config), config_cls)
    data = config_to_dict(config)
    top = {
        "output_dir": args.out,
        "resume": args.resume,
        "init": args.init,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "device": args.device,
        "precision": args.precision,
        "seed": args.seed,
        "log_interval": args.log_interval,
        "checkpoint_interval": args.checkpoint_interval,
        "model_config": args.model_config,
    }
    data.update({k: v for k, v in top.items() if v is not None})
    if args.no_tensorboard:
        data["tensorboard"] = False
    if args.strategy is not None:
        data["distributed"]["strategy"] = args.strategy
    for key, value in (
        ("batch_size", args.batch_size),
        ("num_workers", args.num_workers),
        ("train_split", args.train_split),
        ("val_split", args.val_split),
    ):
        if value is not None:
            data["data"][key] = None if key == "val_split" and value.lower() == "none" else value
    dataset = data["data"]["dataset"]
    for key, value in (("dataroot", args.dataroot), ("version", args.version), ("index_path", args.index)):
        if value is not None:
            dataset[key] = value
    config = config_from_dict(data, config_cls, source=f"{args.config} + command line")
    if config.stage != args.stage:
        raise ValueError(f"--stage {args.stage} but {args.config} is a stage-{config.stage} config")
    return config


def _fit(stage: int, config: TrainConfig, ctx: DistContext) -> TrainResult:
    """Build the trainer, fit, and release it before the caller leaves the process group.

    The trainer sits in reference cycles (module hooks, closures over ``self``), so a plain return keeps it, its
    DDP/FSDP wrappers and through them the process group alive until some later garbage collection, possibly the
    interpreter's finalisation, where gloo's threads are torn down in no fixed order. CI saw one rank of a finished
    2-process run abort there ("terminate called without an active exception"). So the order is fixed: every rank
    waits at a barrier (no peer closes its connections while another is still in the last collective), the trainer is
    collected here, then the caller destroys the process group.
    """
    from dima_core.training.distributed import barrier

    trainer = build_trainer(stage, config, ctx)
    result = trainer.fit()
    barrier(ctx)
    del trainer
    gc.collect()
    return result


def run(args: argparse.Namespace) -> int:
    from dima_core.io.checkpoint import CheckpointError
    from dima_core.training.distributed import cleanup_distributed, configure_rank_logging, init_distributed

    config = resolve_config(args)
    ctx = init_distributed(config.device, distributed=config.distributed)
    configure_rank_logging(ctx, verbose=getattr(args, "verbose", False))
    try:
        result = _fit(args.stage, config, ctx)
    except CheckpointError as exc:
        print(f"dima: checkpoint error (rank {ctx.rank}): {exc}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    if ctx.is_main:
        loss = result.metrics.get("loss/total")
        print(
            f"stage {config.stage}: {result.step} steps, epoch {result.epoch}/{config.epochs}"
            + (f", last loss {loss:.4f}" if loss is not None else "")
            + (
                f", val plan L2 avg {result.val_metrics['plan_l2_avg']:.3f} m"
                if "plan_l2_avg" in result.val_metrics
                else ""
            )
            + f"; checkpoint {result.checkpoint}"
            + (
                f" (stopped by a signal: continue with --resume {config.output_dir})"
                if result.stopped_by_signal
                else ""
            )
        )
    return 0 if result.replicas_consistent else 1
