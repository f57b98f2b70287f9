"""``dima bench distill``: does DiMA's distillation help the vision planner? (issue section 8)

    dima data synth --out data/synth_longtail --scenes 24 --seed 0 --config config/synth_longtail.yaml \\
        --width 192 --height 108 --seconds 12                  # long-tail scenarios held out to val
    dima bench distill --dataroot data/synth_longtail --version v1.0-synth --epochs 8 --stage2-epochs 2 \\
        --seeds 0 1 2 [--rungs ladder|full] [--work runs/bench_distill] [--doc docs/benchmarks.md]

For every seed, with the same data and the same total number of epochs E:
- (A) stage 1 only: the planner trained for E epochs;
- (B) DiMA: stage 1 for E - E2 epochs, then stage 2 (joint with the MLLM teacher) for E2 epochs from it; with
  ``--rungs ladder`` once per rung of the paper's ablation ladder (:data:`LADDER`), each rung a set of
  ``joint.tasks`` / ``joint.beam_tokens`` switches (the last rung is full DiMA), with ``--rungs full`` only that.
Every model is evaluated vision-only (the LLM is not even constructed) on ``--val-split``: L2 and collision in both
conventions (VAD cumulative, UniAD per-step), overall and per long-tail split (the synthetic world's scenario tags;
held-out scenarios reach val only). Values are mean +- sample standard deviation over seeds. The table, the command
line and the machine go to ``--doc`` (its "Distillation" section is replaced).

``--max-steps`` caps every training stage (a smoke run: the numbers then mean nothing and the report says so).

Seeds can run as separate jobs (one process or cluster job per seed, each with its own ``--work`` and ``--doc ''``)
and be merged afterwards into one table with spread:

    dima bench distill --from-reports runs/bd_s0/report.json runs/bd_s1/report.json [--doc docs/benchmarks.md]

Merging checks that the reports ran the same protocol (dataroot, epochs, stage-2 epochs, rungs, configs, splits).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

# The paper's ablation ladder as stage-2 switches: (name, beam_tokens, tasks). Rung 1 trains VQA and the MLLM
# planning head on BEV tokens only; each later rung adds one ingredient; the last one is full DiMA.
_ALL_TOKENS = ["bev", "ego", "agent", "map"]
_OFF = {"vqa": True, "llm_plan": True, "distill": False, "recon": False, "future": False, "scene_edit": False}
LADDER: tuple[tuple[str, list[str], dict[str, bool]], ...] = (
    ("VQA + LLM planning (BEV tokens)", ["bev"], dict(_OFF)),
    ("+ all BEAM tokens", _ALL_TOKENS, dict(_OFF)),
    ("+ distillation", _ALL_TOKENS, {**_OFF, "distill": True}),
    ("+ masked reconstruction", _ALL_TOKENS, {**_OFF, "distill": True, "recon": True}),
    ("+ future prediction", _ALL_TOKENS, {**_OFF, "distill": True, "recon": True, "future": True}),
    ("+ scene editing (full DiMA)", _ALL_TOKENS, {k: True for k in _OFF}),
)
SECTION_TITLE = "## Distillation (dima bench distill)"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("distill", help="stage 1 vs stage 1 + DiMA stage 2 (and the ablation ladder), "
                              "vision-only metrics over seeds -> docs/benchmarks.md", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", help="synthetic world (long-tail scenarios held out to val)")
    p.add_argument("--version", default="v1.0-synth")
    p.add_argument("--index", default=None, help="cached index at the model's map resolution (default: built once)")
    p.add_argument("--stage1-config", default="config/train/stage1_dima_cpu.yaml")
    p.add_argument("--stage2-config", default="config/train/stage2_dima_cpu.yaml")
    p.add_argument("--model-config", default=None, help="planner YAML for both arms (default: the configs')")
    p.add_argument("--epochs", type=int, default=8, help="total epochs E of each arm")
    p.add_argument("--stage2-epochs", type=int, default=2, help="epochs E2 of stage 2 inside arm B")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rungs", choices=("ladder", "full"), default="ladder", help="every ladder rung or full DiMA only")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--batch-size", type=int, default=None, help="per-stage batch size override")
    p.add_argument("--max-steps", type=int, default=None, help="cap every stage (smoke runs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument("--work", default="runs/bench_distill", help="run directories and the JSON report")
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update ('' to skip)")
    p.add_argument("--from-reports", nargs="+", default=None, metavar="REPORT",
                   help="merge the report.json files of earlier runs (e.g. one per seed) instead of training")
    p.set_defaults(func=run)
    return p


def _config(path: str, cls: Any, overrides: dict[str, Any], joint: Optional[dict[str, Any]] = None) -> Any:
    from dima_core.config import config_from_dict, config_to_dict, load_config
    from dima_core.training.stage1 import resolve_repo_path

    data = config_to_dict(load_config(resolve_repo_path(path), cls))
    data_section = overrides.pop("data", {})
    dataset = data_section.pop("dataset", {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["data"].update({k: v for k, v in data_section.items() if v is not None})
    data["data"]["dataset"].update({k: v for k, v in dataset.items() if v is not None})
    if joint:
        for key, value in joint.items():
            data["joint"][key] = value
    return config_from_dict(data, cls, source=f"{path} (bench distill)")


def _train(config: Any, stage: int) -> Path:
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import build_stage1_trainer
    from dima_core.training.stage2 import build_stage2_trainer

    build = build_stage1_trainer if stage == 1 else build_stage2_trainer
    result = build(config, DistContext()).fit()
    if result.checkpoint is None:
        raise RuntimeError(f"stage {stage} run in {config.output_dir} wrote no checkpoint")
    return result.checkpoint


def _evaluate(checkpoint: Path, index: Any, split: str, device: str) -> dict:
    from dima_core.eval.dima_modes import load_planner_for_mode
    from dima_core.eval.evaluate import evaluate_planners
    from dima_core.eval.planner_inference import inference_dataset, run_planner

    loaded = load_planner_for_mode(checkpoint, "vision")
    dataset = inference_dataset(loaded, index, split)
    plans = run_planner(loaded.model, dataset, device=device).trajectories
    samples = [index.get(t) for t in dataset.tokens]
    return evaluate_planners(samples, {"model": lambda s: plans[s.token]})["model"]


def _metrics(report: dict) -> dict[str, Optional[float]]:
    """Flat {group/convention/metric: value} of one evaluation (overall + every split)."""
    out: dict[str, Optional[float]] = {}
    groups = {"overall": report, **report.get("splits", {})}
    for group, rep in groups.items():
        for conv in ("vad", "uniad"):
            for metric in ("l2", "collision"):
                out[f"{group}/{conv}/{metric}"] = rep[conv][metric]["avg"]
        out[f"{group}/n"] = float(rep.get("num_samples", 0))
    return out


def _mean_std(values: list[Optional[float]]) -> str:
    import numpy as np

    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{float(np.mean(vals)):.3f} ± {float(np.std(vals, ddof=1)):.3f}"


def _table(results: dict[str, list[dict[str, Optional[float]]]]) -> str:
    # Splits without a single val sample (a tag the val scenes happen not to carry) would only add empty columns.
    groups = sorted(g for g in {k.split("/")[0] for runs in results.values() for r in runs for k in r} - {"overall"}
                    if any((r.get(f"{g}/n") or 0) > 0 for runs in results.values() for r in runs))
    header = ["method", "L2 VAD (m)", "Col VAD (%)", "L2 UniAD (m)", "Col UniAD (%)"]
    header += [f"{g} L2 VAD / Col VAD" for g in groups]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in results.items():
        cells = [name] + [_mean_std([r.get(f"overall/{c}/{m}") for r in runs])
                          for c, m in (("vad", "l2"), ("vad", "collision"), ("uniad", "l2"), ("uniad", "collision"))]
        for g in groups:
            n = runs[0].get(f"{g}/n") if runs else None
            cells.append(f"{_mean_std([r.get(f'{g}/vad/l2') for r in runs])} / "
                         f"{_mean_std([r.get(f'{g}/vad/collision') for r in runs])} (n={int(n or 0)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()}: {platform.processor() or platform.machine()}, torch {torch.__version__}, {gpu}"


def _replace_section(path: str, section: str) -> None:
    """Replace this benchmark's section of ``path`` (up to the next '## ' heading), or append it."""
    doc = Path(path)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start = text.find(SECTION_TITLE)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION_TITLE))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text if text.endswith("\n") else text + "\n")


def run(args: argparse.Namespace) -> int:
    """Both arms for every seed (arm B once per rung), evaluated vision-only; the report and the doc section."""
    import torch

    if args.from_reports:
        return run_merge(args)
    if not args.dataroot:
        raise ValueError("--dataroot is required (or --from-reports to merge earlier runs)")
    if not 0 < args.stage2_epochs < args.epochs:
        raise ValueError("--stage2-epochs must be between 1 and --epochs - 1 (arm B needs both stages)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    common = _common_overrides(args, device)
    rungs = LADDER if args.rungs == "ladder" else LADDER[-1:]
    results: dict[str, list[dict[str, Optional[float]]]] = {"(A) stage 1 only": []}
    for name, _, _ in rungs:
        results[f"(B) DiMA: {name}"] = []
    index = None
    start = time.time()
    for seed in args.seeds:
        seed_dir = work / f"seed{seed}"
        ckpt_a = _train_stage1(args, common, seed, args.epochs, seed_dir / "A_stage1")
        if index is None:  # the index stage 1 built (or was given) serves every evaluation
            index = _evaluation_index(args, common, seed_dir / "A_stage1")
        results["(A) stage 1 only"].append(_metrics(_evaluate(ckpt_a, index, args.val_split, device)))
        ckpt_b1 = _train_stage1(args, common, seed, args.epochs - args.stage2_epochs, seed_dir / "B_stage1")
        for k, (name, tokens, tasks) in enumerate(rungs):
            ckpt_b = _train_stage2_rung(args, common, seed, ckpt_b1, tokens, tasks, seed_dir / f"B_stage2_rung{k}")
            results[f"(B) DiMA: {name}"].append(_metrics(_evaluate(ckpt_b, index, args.val_split, device)))
        log.info("seed %d done after %.0f s", seed, time.time() - start)
    report = {"args": {k: v for k, v in vars(args).items() if k != "func"}, "results": results,
              "elapsed_s": time.time() - start, "command": _command_line(args),
              "machine": f"{_machine()}, device {device}"}
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    _publish(_section([report]), args.doc)
    return 0


def _common_overrides(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The overrides both stages of both arms share (data, device, step cap; no validation, no TensorBoard)."""
    return {"device": device, "max_steps": args.max_steps, "model_config": args.model_config,
            "tensorboard": False, "progress_bar": False, "validate_every_epochs": 0,
            "data": {"train_split": args.train_split, "val_split": None, "batch_size": args.batch_size,
                     "dataset": {"dataroot": args.dataroot, "version": args.version, "index_path": args.index}}}


def _copy(common: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(common))  # _config consumes the nested sections it is given


def _train_stage1(args: argparse.Namespace, common: dict[str, Any], seed: int, epochs: int, out: Path) -> Path:
    """A stage-1 run of ``epochs`` epochs in ``out``; returns its checkpoint."""
    from dima_core.training.config import TrainConfig

    cfg = _config(args.stage1_config, TrainConfig, {**_copy(common), "seed": seed, "epochs": epochs,
                                                    "output_dir": str(out)})
    return _train(cfg, 1)


def _train_stage2_rung(args: argparse.Namespace, common: dict[str, Any], seed: int, init: Path, tokens: list[str],
                       tasks: dict[str, bool], out: Path) -> Path:
    """Arm B's stage 2 for one ladder rung (its BEAM tokens and tasks), from the stage-1 checkpoint ``init``."""
    from dima_core.training.stage2 import Stage2TrainConfig

    cfg = _config(args.stage2_config, Stage2TrainConfig,
                  {**_copy(common), "seed": seed, "epochs": args.stage2_epochs, "output_dir": str(out),
                   "init": str(init)},
                  joint={"beam_tokens": tokens, "tasks": tasks})
    return _train(cfg, 2)


def _evaluation_index(args: argparse.Namespace, common: dict[str, Any], stage1_dir: Path) -> Any:
    """The dataset index the first stage-1 run built (or was given), loaded once for every evaluation."""
    from dima_core.models import load_model_config
    from dima_core.training.config import TrainConfig
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import load_index, resolve_repo_path, stage1_data_config

    cfg = _config(args.stage1_config, TrainConfig, {**_copy(common), "output_dir": str(stage1_dir)})
    model_config = load_model_config(resolve_repo_path(cfg.model_config))
    return load_index(stage1_data_config(cfg, model_config), cfg, DistContext())


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed when run from the ``dima`` CLI, else the equivalent one built from ``args``."""
    if sys.argv and sys.argv[0].endswith(("dima", "cli.py")):
        return "dima " + " ".join(sys.argv[1:])
    return (f"dima bench distill --dataroot {args.dataroot} --epochs {args.epochs} --stage2-epochs "
            f"{args.stage2_epochs} --seeds {' '.join(map(str, args.seeds))} --rungs {args.rungs}"
            + (f" --max-steps {args.max_steps}" if args.max_steps else ""))


# Arguments that define the protocol: reports that differ in any of them cannot share a table.
_PROTOCOL = ("dataroot", "version", "stage1_config", "stage2_config", "model_config", "epochs", "stage2_epochs",
             "rungs", "train_split", "val_split", "batch_size", "max_steps")


def merge_reports(reports: list[dict]) -> dict[str, list[dict[str, Optional[float]]]]:
    """Concatenate the per-seed results of several runs of the same protocol (a seed may appear once only)."""
    if not reports:
        raise ValueError("no reports to merge")
    first = reports[0]["args"]
    seen: set[int] = set()
    merged: dict[str, list[dict[str, Optional[float]]]] = {}
    for i, rep in enumerate(reports):
        diff = [k for k in _PROTOCOL if rep["args"].get(k) != first.get(k)]
        if diff:
            raise ValueError(f"report {i} ran a different protocol than report 0: "
                             + ", ".join(f"{k} {rep['args'].get(k)!r} != {first.get(k)!r}" for k in diff))
        dup = seen & set(rep["args"]["seeds"])
        if dup:
            raise ValueError(f"report {i} repeats seeds {sorted(dup)}")
        seen |= set(rep["args"]["seeds"])
        for name, runs in rep["results"].items():
            merged.setdefault(name, []).extend(runs)
    return merged


def _section(reports: list[dict]) -> str:
    args = reports[0]["args"]
    seeds = [s for rep in reports for s in rep["args"]["seeds"]]
    wall = [rep.get("elapsed_s") for rep in reports]
    wall_text = (" + ".join(f"{w / 60:.1f}" for w in wall if w is not None) + " min"
                 if all(w is not None for w in wall) else "not recorded")
    runs_text = ("\n".join(f"Command: `{rep.get('command', '?')}`  \nMachine: {rep.get('machine', '?')}  "
                           for rep in reports))
    if len(reports) > 1:
        runs_text += "\nMerged with `dima bench distill --from-reports ...` (one run per seed, run side by side).  "
    smoke = (f"\n**Smoke run** (every stage capped at {args['max_steps']} steps): these numbers only show the "
             "pipeline runs; they say nothing about whether distillation helps.\n" if args.get("max_steps") else "")
    return (
        f"{SECTION_TITLE}\n\n{runs_text}\n"
        f"Seeds: {seeds}; E = {args['epochs']} epochs per arm, stage 2 = last {args['stage2_epochs']} of arm B; "
        f"wall time {wall_text}.  \n"
        "Vision-only evaluation (LLM dropped) on split "
        f"`{args['val_split']}`; L2 avg over 1/2/3 s (m), collision avg (%); mean ± std over seeds. Paper claims "
        "(nuScenes, VAD-Tiny): -37% L2, -80% collision, -44% long-tail L2.\n"
        f"{smoke}\n{_table(merge_reports(reports))}\n"
    )


def _publish(section: str, doc: Optional[str]) -> None:
    print(section)
    if doc:
        _replace_section(doc, section)
        print(f"updated {doc}")


def run_merge(args: argparse.Namespace) -> int:
    reports = []
    for path in args.from_reports:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read bench distill report {path}: {exc}") from exc
        if not {"args", "results"} <= set(reports[-1]):
            raise ValueError(f"{path} is not a bench distill report (no 'args'/'results')")
    _publish(_section(reports), args.doc)
    return 0


__all__ = ["LADDER", "add_parser", "merge_reports", "run"]
