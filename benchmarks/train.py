"""``dima bench train``: how fast the stage-1 training loop runs on this machine, next to the bare model step, and
where the loop's time goes.

Two measurements on the same trainer (built by ``build_stage1_trainer`` from ``--config``, as ``dima train``
builds it):

1. *loop*: ``--warmup + --steps`` steps of the real ``Trainer.fit`` (DataLoader, the dataset reading the JPEGs or
   the image cache, the step, logging and checkpointing as the config sets them; validation off);
2. *bare step*: ``--bare-steps`` (default: as many) ``Trainer.train_step`` calls on one batch that stays in memory
   (forward, loss with matching, backward, optimiser; no data loading, no logging, no checkpoints).

Both are timed by explicit timers around the trainer's own code paths (:mod:`dima_core.training.profiling`: data
wait, forward, loss + matching, backward, optimiser, logging, checkpointing); the first ``--warmup`` steps of each are
not counted. ``--profile-ops K`` adds torch.profiler's K most expensive operators of the bare step. Samples/s are
wall-clock; samples per CPU-second of this process are reported too, because the 2-core machine is shared (the load
average is recorded at start and end).

``--doc`` adds (or replaces, by ``--label``) one row of the table in the "Training throughput" section of
docs/benchmarks.md; text around the table is kept. ``report.json`` in ``--out`` has every number, the per-step
losses of the loop (for comparing loss curves between settings) and the op table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.command_line import bench_command

log = logging.getLogger(__name__)

SECTION = "## Training throughput (`dima bench train`)"
TABLE_HEAD = (
    "label",
    "loop samples/s",
    "bare step samples/s",
    "loop / bare",
    "data",
    "forward",
    "loss + matching",
    "backward",
    "optimizer",
    "logging + ckpt",
    "other",
    "threads",
    "load avg start / end",
    "command",
    "machine",
)
INTRO = (
    "Measured with `dima bench train`: the real stage-1 training loop (`Trainer.fit`: DataLoader, dataset, step, "
    "logging, checkpoints) and the bare step (`Trainer.train_step` on one batch kept in memory: forward, PlannerLoss "
    "with Hungarian matching, backward, AdamW) on the same trainer, timed by explicit timers around the trainer's own "
    "code paths (`dima_core/training/profiling.py`); warm-up steps are not counted. The split columns are the loop's "
    "share of wall time per section (`data`: waiting for the next batch and decoding it; `other`: outside every "
    "section). One row per `--label`; re-running a label replaces its row. The machine is shared: compare rows "
    "measured at similar load averages, and the samples per CPU-second in each run's report.json."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="training-loop samples/s vs the bare model step, and the loop's time split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="config/train/stage1_dima_cpu.yaml", help="stage-1 training YAML")
    p.add_argument("--dataroot", default=None, help="dataset root (default: the config's)")
    p.add_argument("--version", default=None, help="table version (default: the config's)")
    p.add_argument(
        "--index",
        default=None,
        help="sample index from `dima data index` (default: the config's, else built into --out)",
    )
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--image-cache", default=None, help="pre-decoded image cache (`dima data cache`); built there when missing"
    )
    cache.add_argument("--no-image-cache", action="store_true", help="read the JPEGs even if the config sets a cache")
    p.add_argument("--model-config", default=None, help="model YAML (default: the config's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    p.add_argument("--precision", choices=("off", "fp16", "bf16"), default=None, help="default: the config's")
    p.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="let --precision bf16 autocast on the CPU (emulated, and slow, without AVX512-BF16/AMX)",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC convolution weights (config channels_last)")
    p.add_argument(
        "--optimizer-impl",
        choices=("auto", "for_loop", "foreach", "fused"),
        default=None,
        help="AdamW implementation (default: the config's)",
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps of each measurement (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default 3)")
    p.add_argument(
        "--bare-steps",
        type=int,
        default=None,
        help="timed bare steps (default: --steps; fewer when only the loop's loss curve is wanted)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="default cpu")
    p.add_argument(
        "--profile-ops",
        type=int,
        default=0,
        metavar="K",
        help="also profile the bare step with torch.profiler and report its K costliest operators",
    )
    p.add_argument("--label", default=None, help="row name in the doc table (default: derived from the options)")
    p.add_argument("--out", default="runs/bench_train", help="run directory (checkpoints, index, report.json)")
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update ('' to skip)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ pieces


def bench_config(args: argparse.Namespace) -> Any:
    """The training YAML with the bench's overrides (validated by the config system like any file)."""
    from dima_core.config import config_from_dict, config_to_dict, load_config
    from dima_core.training.config import TrainConfig
    from dima_core.training.stage1 import resolve_repo_path

    data = config_to_dict(load_config(resolve_repo_path(args.config), TrainConfig))
    dataset = data["data"]["dataset"]
    for key, value in (
        ("dataroot", args.dataroot),
        ("version", args.version),
        ("index_path", args.index),
        ("image_cache", args.image_cache),
    ):
        if value is not None:
            dataset[key] = value
    if args.no_image_cache:
        dataset["image_cache"] = None
    for key, value in (("batch_size", args.batch_size), ("num_workers", args.num_workers)):
        if value is not None:
            data["data"][key] = value
    if args.model_config is not None:
        data["model_config"] = args.model_config
    if args.precision is not None:
        data["precision"] = args.precision
    if args.cpu_bf16:
        data["cpu_bf16"] = True
    if args.channels_last:
        data["channels_last"] = True
    if args.optimizer_impl is not None:
        data["optimizer"]["implementation"] = args.optimizer_impl
    # Training steps only: no validation, no progress bar; logging and checkpoint settings stay the config's, they
    # are part of the loop being measured.
    data.update(
        output_dir=str(Path(args.out) / "run"),
        device=args.device,
        resume=None,
        init=None,
        validate_every_epochs=0,
        progress_bar=False,
        max_steps=args.warmup + args.steps,
    )
    return config_from_dict(data, TrainConfig, source=f"{args.config} + dima bench train")


def default_label(args: argparse.Namespace, config: Any) -> str:
    """A row name from what differs between runs: model, batch, image source, precision, layout, optimiser."""
    parts = [Path(config.model_config).stem, f"batch {config.data.batch_size}"]
    parts.append("image cache" if config.data.dataset.image_cache else "JPEG")
    if config.data.num_workers:
        parts.append(f"{config.data.num_workers} workers")
    if config.precision != "off":
        parts.append(config.precision + (" cpu" if config.cpu_bf16 else ""))
    if config.channels_last:
        parts.append("channels_last")
    if config.optimizer.implementation != "auto":
        parts.append(f"AdamW {config.optimizer.implementation}")
    parts.append(f"{args.threads} thread{'s' if args.threads != 1 else ''}")
    return ", ".join(parts)


def fixed_batch(dataset: Any, collate_fn: Any, batch_size: int) -> Any:
    """The first ``batch_size`` items of the training set, collated once (the bare step's batch)."""
    if len(dataset) < batch_size:
        raise ValueError(f"the training split has {len(dataset)} samples, fewer than one batch of {batch_size}")
    return collate_fn([dataset[i] for i in range(batch_size)])


def bare_steps(trainer: Any, batch: Any, steps: int, warmup: int) -> Any:
    """Time ``warmup + steps`` ``train_step`` calls on ``batch``; returns the counted steps' TimingSummary."""
    from dima_core.io.batch import batch_size_of
    from dima_core.training.profiling import StepTimer

    timer = StepTimer(trainer.ctx.device, warmup_steps=warmup)
    trainer.set_timer(timer)
    trainer.model.train()
    size = batch_size_of(batch)
    timer.restart()
    for _ in range(warmup + steps):
        trainer.train_step(batch)
        timer.end_step(size)
    return timer.summary()


def profile_ops(trainer: Any, batch: Any, steps: int, top: int) -> list[dict[str, Any]]:
    """torch.profiler's ``top`` operators by self CPU time over ``steps`` bare steps (after one untimed step)."""
    from torch.profiler import ProfilerActivity, profile

    from dima_core.training.profiling import NULL_TIMER

    trainer.set_timer(NULL_TIMER)
    trainer.train_step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {
            "op": e.key,
            "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
            "calls_per_step": e.count / steps,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ]


def _pct(summary: Any, *names: str) -> str:
    share = sum(summary.fraction(name) for name in names)
    return "-" if math.isnan(share) else f"{100 * share:.1f} %"


def table_row(report: Mapping[str, Any]) -> list[str]:
    """The doc table's cells for one run (:data:`TABLE_HEAD` order)."""
    from dima_core.training.profiling import TimingSummary

    loop = TimingSummary(
        **{k: report["loop"][k] for k in ("steps", "samples", "wall_s", "cpu_s")}, sections=report["loop"]["sections_s"]
    )
    bare = report["bare"]["samples_per_s"]
    load = report["load_average"]
    return [
        report["label"],
        f"{loop.samples_per_s:.2f}",
        f"{bare:.2f}",
        f"{loop.samples_per_s / bare:.2f}",
        _pct(loop, "data"),
        _pct(loop, "forward"),
        _pct(loop, "loss"),
        _pct(loop, "backward"),
        _pct(loop, "optimizer"),
        _pct(loop, "logging", "checkpoint"),
        _pct(loop, "other"),
        str(report["threads"]),
        f"{load['start'][0]:.2f} / {load['end'][0]:.2f}",
        f"`{report['command']}`",
        report["machine"],
    ]


def _row_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def update_doc(path: str, row: list[str]) -> None:
    """Put ``row`` into the section's table (replacing the row with the same label), keeping every other line of
    the file; create the section (intro + table) when it is missing."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    header = "| " + " | ".join(TABLE_HEAD) + " |"
    rule = "|" + "|".join(["---"] + ["---:"] * 12 + ["---", "---"]) + "|"
    new_line = "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
    start = text.find(SECTION)
    if start < 0:
        section = f"{SECTION}\n\n{INTRO}\n\n{header}\n{rule}\n{new_line}\n"
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        end = len(text) if end < 0 else end + 1
        lines = text[start:end].splitlines()
        table = [i for i, line in enumerate(lines) if line.startswith("| ") or line.startswith("|-")]
        if not table:
            lines[1:1] = ["", header, rule, new_line]
        else:
            first, last = table[0], table[-1]
            rows = [line for line in lines[first + 2 : last + 1] if line.startswith("| ")]
            rows = [r for r in rows if _row_cells(r)[0] != row[0]] + [new_line]
            lines[first : last + 1] = [header, rule, *rows]
        text = text[:start] + "\n".join(lines).rstrip("\n") + "\n" + ("\n" if end < len(text) else "") + text[end:]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def _load() -> tuple[float, float, float]:
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def _summary_lines(name: str, summary: Any, final_checkpoint_s: float | None = None) -> list[str]:
    from dima_core.training.profiling import SECTIONS

    lines = [
        f"{name}: {summary.samples_per_s:.2f} samples/s ({summary.steps} steps, "
        f"{1e3 * summary.wall_s / max(summary.steps, 1):.0f} ms/step; {summary.samples_per_cpu_s:.2f} samples "
        "per CPU-second)"
    ]
    for section in (*SECTIONS, "other"):
        lines.append(
            f"  {section:<10} {summary.ms_per_step(section):8.1f} ms/step  {100 * summary.fraction(section):5.1f} %"
        )
    if final_checkpoint_s is not None:
        lines.append(f"  final checkpoint after the loop: {1e3 * final_checkpoint_s:.0f} ms (once per run)")
    return lines


# ------------------------------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> int:
    """Build the stage-1 trainer, time its loop, then its bare step; report.json, the summary and the doc row."""
    import torch

    from benchmarks.planner import set_total_steps
    from benchmarks.synth import machine
    from dima_core.training.distributed import DistContext, resolve_device
    from dima_core.training.stage1 import build_stage1_trainer

    if args.steps < 1 or args.warmup < 0 or (args.bare_steps is not None and args.bare_steps < 1):
        raise ValueError("--steps and --bare-steps must be >= 1, --warmup >= 0")
    if args.threads < 1:
        raise ValueError("--threads must be >= 1")
    torch.set_num_threads(args.threads)
    load_start = _load()
    config = bench_config(args)
    label = args.label or default_label(args, config)
    ctx = DistContext(device=resolve_device(config.device, 0))
    trainer = build_stage1_trainer(config, ctx, record_history=True)
    # Exactly the requested steps, the cosine schedule ending there (its length does not change a step's cost).
    set_total_steps(trainer, args.warmup + args.steps)

    result, loop, final_checkpoint = time_loop(trainer, ctx.device, args.warmup)  # 1.
    # 2. The bare step on one batch of the same training set.
    batch = fixed_batch(trainer.dataset, trainer.collate_fn, config.data.batch_size)
    bare = bare_steps(trainer, batch, args.steps if args.bare_steps is None else args.bare_steps, args.warmup)
    ops = profile_ops(trainer, batch, min(args.steps, 5), args.profile_ops) if args.profile_ops > 0 else []
    load_end = _load()

    report = {
        "label": label,
        "command": bench_command("train"),
        "machine": machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "precision": trainer.precision.name,
        "config": args.config,
        "model_config": config.model_config,
        "batch_size": config.data.batch_size,
        "image_cache": config.data.dataset.image_cache,
        "num_workers": config.data.num_workers,
        "channels_last": config.channels_last,
        "optimizer_implementation": config.optimizer.implementation,
        "load_average": {"start": list(load_start), "end": list(load_end)},
        "loop": loop.as_dict(),
        "final_checkpoint_s": final_checkpoint,
        "bare": bare.as_dict(),
        "loop_over_bare": loop.samples_per_s / bare.samples_per_s,
        "ops": ops,
        "history": result.history,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    print("\n".join(summary_lines(report, loop, bare, final_checkpoint)))
    if args.doc:
        update_doc(args.doc, table_row(report))
        print(f"updated {args.doc}")
    return 0


def time_loop(trainer: Any, device: Any, warmup: int) -> tuple[Any, Any, float | None]:
    """Step 1: the whole training loop (``trainer.fit()``) under a StepTimer that skips ``warmup`` steps.

    Returns the fit result, the counted steps' TimingSummary and the final checkpoint's seconds (written after the
    last step, so outside every step; None when there was none).
    """
    from dima_core.training.profiling import StepTimer

    timer = StepTimer(device, warmup_steps=warmup)
    trainer.set_timer(timer)
    result = trainer.fit()
    return result, timer.summary(), timer.pending().get("checkpoint")


def summary_lines(report: Mapping[str, Any], loop: Any, bare: Any, final_checkpoint: float | None) -> list[str]:
    """The console summary: the run's setup, both time splits, their ratio and the profiled operators."""
    load_start, load_end = report["load_average"]["start"], report["load_average"]["end"]
    lines = [
        f"{report['label']} ({report['machine']}; torch {report['torch']}, {report['threads']} threads, "
        f"precision {report['precision']}; load average {load_start[0]:.2f} -> {load_end[0]:.2f})"
    ]
    lines += _summary_lines("loop", loop, final_checkpoint)
    lines += _summary_lines("bare step", bare)
    lines.append(f"loop / bare step: {report['loop_over_bare']:.2f}")
    for op in report["ops"]:
        lines.append(f"  op {op['op']:<45} {op['self_ms_per_step']:8.1f} ms/step  {100 * op['share']:5.1f} %")
    return lines
