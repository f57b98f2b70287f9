"""torchrun worker of test_fsdp.py: real FSDP training on CPU ranks (gloo), with the checks that need the live,
sharded model. Not a test module (pytest does not collect it). Each mode runs all its phases in one process group
(one launch: process start and imports dominate runs this small); rank 0 writes the results as JSON to --report.

    python -m torch.distributed.run --nproc_per_node 2 ... test/fsdp_worker.py stage2 --root DIR --report FILE -- \\
        <dima train arguments without --out / --strategy / --max-steps>
    python -m torch.distributed.run --nproc_per_node 2 ... test/fsdp_worker.py tiny --root DIR --report FILE

stage2 (the real stage-2 model, micro planner + tiny local Llama):
  fsdp    FSDP, 2 steps, a checkpoint after each; gathered parameter snapshots before and after; the gradient
          clipping of the last step's sharded gradients against torch's own DTensor norm;
  resume  a new FSDP trainer resumes fsdp's step-1 checkpoint and trains step 2 (must equal fsdp's step 2);
  ddp     the same run under DDP for 1 step: the reference checkpoint layout.
tiny (training_fixtures' tiny regression problem, 6 steps each): DDP, then FSDP with every sharding (full,
  grad_op, hybrid with one rank per shard group, i.e. two replicas); each FSDP run's losses against DDP's.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

GROUPS = ("encoder", "adapters", "lora", "base")


def group_of(name: str) -> str | None:
    """Which checked group a parameter of the joint model belongs to (None: not checked)."""
    if name.startswith(("planner.backbone.", "planner.bev_encoder.")):
        return "encoder"
    if name.startswith("teacher.adapters."):
        return "adapters"
    if name.startswith("teacher.llm."):
        return "lora" if "lora_" in name else "base"
    return None


def full_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter gathered to a full CPU tensor on every rank (collective; the test model is small)."""
    from dima_core.training.fsdp import full_value

    return {name: full_value(p.detach()).cpu().clone() for name, p in model.named_parameters()}


def clip_check(trainer: Any) -> dict[str, float]:
    """fsdp.clip_grad_norm on the last step's sharded gradients vs torch's DTensor get_total_norm, and whether it
    scales every local shard by max_norm / norm (max_norm a quarter of the norm)."""
    from dima_core.training.fsdp import clip_grad_norm, full_value, local_tensor

    params = [p for group in trainer.optimizer.param_groups for p in group["params"] if p.grad is not None]
    reference = float(full_value(torch.nn.utils.get_total_norm([p.grad for p in params])))
    before = [local_tensor(p.grad).clone() for p in params]
    norm = float(clip_grad_norm(params, reference / 4.0, trainer.fsdp.mesh))
    worst = max(
        (
            float((local_tensor(p.grad) - b * 0.25).abs().max())
            for p, b in zip(params, before, strict=True)
            if b.numel()
        ),
        default=0.0,
    )
    return {"torch_norm": reference, "our_norm": norm, "scaling_error": worst, "num_grads": len(params)}


def stage2_config(root: Path, name: str, train_args: list[str], *extra: str) -> Any:
    """The TrainConfig ``dima train`` would build from these arguments (writing to root/name)."""
    from dima_core.commands.train import add_parser, resolve_config

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return resolve_config(parser.parse_args([*train_args, "--out", str(root / name), *extra]))


def run_stage2(ctx: Any, root: Path, train_args: list[str], report: dict[str, Any]) -> None:
    from dima_core.io.checkpoint import checkpoint_name, load_checkpoint
    from dima_core.training.stage2 import build_stage2_trainer

    config = stage2_config(
        root, "fsdp", train_args, "--strategy", "fsdp", "--max-steps", "2", "--checkpoint-interval", "1"
    )
    trainer = build_stage2_trainer(config, ctx, record_history=True)
    report["layer_units"] = trainer.fsdp.num_layer_units
    report["layer_classes"] = list(trainer.fsdp.layer_classes)
    report["sharded"] = all(type(p).__name__ == "DTensor" for p in trainer.model.parameters())
    before = full_snapshot(trainer.model)
    trainable = {n: p.requires_grad for n, p in trainer.model.named_parameters()}
    result = trainer.fit()
    after = full_snapshot(trainer.model)
    report["fsdp_losses"] = [h["total"] for h in result.history]
    report["replicas_consistent"] = result.replicas_consistent
    report["clip"] = clip_check(trainer)
    changed = {g: 0 for g in GROUPS}
    counted = {g: 0 for g in GROUPS}
    for name, tensor in before.items():
        group = group_of(name)
        if group is not None:
            counted[group] += 1
            changed[group] += int(not torch.equal(tensor, after[name]))
    report["changed"], report["counted"] = changed, counted
    report["base_trainable"] = [n for n, t in trainable.items() if group_of(n) == "base" and t]
    del trainer, before, after
    gc.collect()

    step1 = root / "fsdp" / checkpoint_name(1)
    config = stage2_config(root, "resume", train_args, "--strategy", "fsdp", "--max-steps", "2", "--resume", str(step1))
    resumed = build_stage2_trainer(config, ctx, record_history=True)
    report["resume_losses"] = [h["total"] for h in resumed.fit().history]
    del resumed
    gc.collect()

    config = stage2_config(root, "ddp", train_args, "--strategy", "ddp", "--max-steps", "1")
    report["ddp_losses"] = [h["total"] for h in build_stage2_trainer(config, ctx, record_history=True).fit().history]

    if ctx.is_main:
        a = load_checkpoint(root / "fsdp" / checkpoint_name(2))
        b = load_checkpoint(root / "resume" / checkpoint_name(2))
        report["resume_weights_equal"] = list(a["model"]) == list(b["model"]) and all(
            torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
        )
        sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
        report["resume_optimizer_equal"] = set(sa) == set(sb) and all(
            set(sa[i]) == set(sb[i]) and all(torch.equal(sa[i][k], sb[i][k]) for k in sa[i]) for i in sa
        )


def run_tiny(ctx: Any, root: Path, report: dict[str, Any]) -> None:
    from training_fixtures import build_tiny_trainer, tiny_config

    variants: dict[str, dict[str, Any]] = {
        "ddp": {"strategy": "ddp"},
        "full": {"strategy": "fsdp", "fsdp": {"sharding": "full"}},
        "grad_op": {"strategy": "fsdp", "fsdp": {"sharding": "grad_op"}},
        "hybrid": {"strategy": "fsdp", "fsdp": {"sharding": "hybrid", "hybrid_shard_size": 1}},
    }
    for name, distributed in variants.items():
        result = build_tiny_trainer(tiny_config(root / name, distributed=distributed), ctx).fit()
        report[name] = {
            "losses": [h["total"] for h in result.history],
            "step": result.step,
            "replicas_consistent": result.replicas_consistent,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("stage2", "tiny"))
    parser.add_argument("--root", required=True, type=Path, help="directory for the runs")
    parser.add_argument("--report", required=True, type=Path, help="JSON written by rank 0")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)  # stage2: dima train arguments after "--"
    args = parser.parse_args(argv[:split])
    train_args = argv[split + 1 :]

    from dima_core.training.config import DistributedConfig
    from dima_core.training.distributed import cleanup_distributed, configure_rank_logging, init_distributed

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx = init_distributed("cpu", distributed=DistributedConfig(strategy="fsdp"))
    configure_rank_logging(ctx)
    report: dict[str, Any] = {"world_size": ctx.world_size}
    try:
        if args.mode == "stage2":
            run_stage2(ctx, args.root, train_args, report)
        else:
            run_tiny(ctx, args.root, report)
        if ctx.is_main:
            args.report.write_text(json.dumps(report, indent=1))
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
