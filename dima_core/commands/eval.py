"""``dima eval``: open-loop planning metrics (both conventions) of a planner, with the baselines, in one table.

    dima eval --results FILE --dataroot DIR --version V [--split val] [--out report.json]
              [--longtail-tokens FILE] [--name NAME] [--no-admlp] [--admlp-train-split train]
    dima eval --checkpoint CKPT --dataroot DIR --version V [--split val] [--out report.json]
              [--results-out results.json] [--batch-size N] [--device cpu|cuda] [--index FILE]

Results-file mode scores ``FILE`` (the interface of docs/design.md, Evaluation protocol;
:mod:`dima_core.eval.results_file`) against the GT of ``--split``. Tokens of other splits in the file are ignored
(counted); tokens the dataset does not have are an error naming the token; split samples the file lacks are reported
and counted, not scored. The constant-velocity baseline and the AD-MLP baseline (fitted here on
``--admlp-train-split``) are scored on exactly the same samples.

Checkpoint mode restores the planner from ``CKPT`` (a stage-1 or stage-2 checkpoint file or run directory; the model
config is stored in it) in the inference mode ``--mode`` (``vision``: the planner alone; ``mllm``: the stage-2
teacher's planning head; ``dual``: DiMA-Dual; :mod:`dima_core.eval.dima_modes`), runs it over ``--split`` through
the training data path (:mod:`dima_core.eval.planner_inference`), writes its plans as a results file
(``--results-out``, the same interface, so ``dima eval --results`` on it gives the same planning numbers), and adds
to the report the detection quality of the agent head (nuScenes devkit mAP/NDS on real nuScenes official splits,
else matching-based AP: :mod:`dima_core.eval.detection_metrics`), the Chamfer map AP of the map head
(:mod:`dima_core.eval.map_metrics`) and the per-frame inference latency. Every block of the report states its
formula.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

_MISSING_EXAMPLES = 10


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="score a planner: L2 and collision in the VAD/ST-P3 and UniAD conventions, with baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", metavar="FILE", help="results file {meta, results: {token: {trajectory}}}")
    source.add_argument("--checkpoint", metavar="CKPT", help="stage-1 planner checkpoint file or run directory")
    parser.add_argument("--dataroot", required=True, help="nuScenes (or synthetic world) root")
    parser.add_argument("--version", required=True, help="table version, e.g. v1.0-mini or v1.0-trainval")
    parser.add_argument("--split", default="val", help="split to score ('all' for every sample); default val")
    parser.add_argument("--out", metavar="FILE", help="write the JSON report here")
    parser.add_argument(
        "--longtail-tokens",
        metavar="FILE",
        action="append",
        default=[],
        help='JSON {"<split name>": [sample tokens]} adding long-tail split tags (real nuScenes); repeatable',
    )
    parser.add_argument("--name", help="row name of the scored method (default: the results file's stem)")
    parser.add_argument("--no-admlp", action="store_true", help="skip the AD-MLP (ego-status MLP) baseline")
    parser.add_argument("--admlp-train-split", default="train", help="split the AD-MLP baseline is fitted on")
    parser.add_argument("--admlp-epochs", type=int, default=300, help="AD-MLP training epochs")
    parser.add_argument(
        "--admlp-model",
        metavar="FILE",
        help="AD-MLP weights: loaded when FILE exists, else fitted and saved there (skips refitting on re-runs)",
    )
    ckpt = parser.add_argument_group("checkpoint mode")
    ckpt.add_argument("--results-out", metavar="FILE", help="write the planner's trajectories as a results file")
    ckpt.add_argument("--batch-size", type=int, default=1, help="frames per forward pass (1: per-frame latency)")
    ckpt.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device of the planner")
    ckpt.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (image decoding)")
    ckpt.add_argument(
        "--mode",
        choices=("vision", "mllm", "dual"),
        default="vision",
        help="DiMA inference mode: vision (LLM dropped), mllm (teacher plan head), dual (max-pool); "
        "mllm/dual need a stage-2 checkpoint",
    )
    ckpt.add_argument(
        "--index",
        metavar="FILE",
        help="cached index (`dima data index`, at the model's map resolution); default: index the split",
    )
    ckpt.add_argument(
        "--det-top-k",
        type=int,
        default=None,
        help="detections kept per frame from the flattened query x class scores (default: #queries)",
    )
    ckpt.add_argument(
        "--detection-dir",
        metavar="DIR",
        help="where the devkit's detection evaluation writes (real nuScenes; default: next to --out)",
    )
    parser.set_defaults(func=run)
    return parser


def _primary_planner(args: argparse.Namespace, reader: object, eval_tokens: list[str]) -> tuple[str, object, dict]:
    """(method name, planner callable, report extras) for the prediction source chosen on the command line."""
    from dima_core.eval.results_file import load_results, match_tokens

    results = load_results(args.results, known_tokens=reader.sample_tokens(None))  # type: ignore[attr-defined]
    match = match_tokens(results, eval_tokens)
    if match.missing:
        logger.warning(
            "%d of %d '%s' samples have no result in %s and are not scored (first: %s)",
            len(match.missing),
            len(eval_tokens),
            args.split,
            args.results,
            ", ".join(match.missing[:_MISSING_EXAMPLES]),
        )
    if match.extra:
        logger.info("%d results belong to samples outside split '%s' and are ignored", len(match.extra), args.split)
    if not match.scored:
        raise ValueError(f"{args.results} has no result for any sample of split '{args.split}'")
    name = args.name or Path(args.results).stem
    extras = {
        "source": {"results_file": str(Path(args.results).resolve()), "convention_note": results.convention_note},
        "num_missing_results": len(match.missing),
        "missing_result_tokens": match.missing[:_MISSING_EXAMPLES],
        "num_results_outside_split": len(match.extra),
        "_scored_tokens": match.scored,
    }
    return name, (lambda sample: results.trajectories[sample.token]), extras


def _fit_or_load_admlp(args: argparse.Namespace, reader: object) -> object:
    """The AD-MLP baseline: loaded from ``--admlp-model`` when it exists, else fitted on the train split (or None)."""
    from dima_core.eval.baselines import ADMLPBaseline, ADMLPConfig
    from dima_core.eval.evaluate import fit_admlp

    if args.no_admlp:
        return None
    if args.admlp_model and Path(args.admlp_model).is_file():
        logger.info("AD-MLP baseline loaded from %s", args.admlp_model)
        return ADMLPBaseline.load(args.admlp_model)
    train_tokens = reader.sample_tokens(args.admlp_train_split)  # type: ignore[attr-defined]
    admlp = fit_admlp(
        (reader.build_sample(t) for t in train_tokens),
        ADMLPConfig(epochs=args.admlp_epochs),  # type: ignore[attr-defined]
    )
    if admlp is not None and args.admlp_model:
        admlp.save(args.admlp_model)
    return admlp


def _write_report(report: dict, path: str) -> None:
    """Atomic JSON write (temp file + rename); NaN is refused so tools always get valid JSON."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"\nreport written to {out}")


def run(args: argparse.Namespace) -> int:
    if args.checkpoint:
        return _run_checkpoint(args)
    from dima_core.data.nuscenes_reader import NuScenesReader
    from dima_core.eval.evaluate import baseline_planners, combine_reports, evaluate_planners, report_tables

    reader = NuScenesReader(
        args.dataroot, args.version, with_map=False, longtail_token_files=list(args.longtail_tokens)
    )
    split = None if args.split == "all" else args.split
    eval_tokens = reader.sample_tokens(split)
    if not eval_tokens:
        raise ValueError(f"split '{args.split}' of {args.dataroot} ({args.version}) has no samples")

    name, planner, extras = _primary_planner(args, reader, eval_tokens)
    scored_tokens: list[str] = extras.pop("_scored_tokens")

    admlp = _fit_or_load_admlp(args, reader)
    baselines = baseline_planners(admlp)  # type: ignore[arg-type]
    if name in baselines:
        raise ValueError(f"method name '{name}' is also a baseline's name; pass another --name")
    planners = {name: planner, **baselines}

    reports = evaluate_planners((reader.build_sample(t) for t in scored_tokens), planners)
    report = combine_reports(
        name,
        reports,
        split=args.split,
        dataroot=str(Path(args.dataroot).resolve()),
        version=args.version,
        **extras,
    )
    if admlp is not None:  # how far its test inputs lay outside what it was fitted on (baselines.py)
        report["baselines"][admlp.name]["input_range"] = admlp.input_report()  # type: ignore[attr-defined]
    print(report_tables(reports))
    if report["num_missing_results"]:
        print(f"\n{report['num_missing_results']} samples of split '{args.split}' had no result (not scored).")
    if args.out:
        _write_report(report, args.out)
    return 0


def _perception_table(detection: dict, map_report: dict) -> str:
    """A short text table of the BEAM heads' detection and map quality."""
    lines = [f"detection ({detection['method']}): mAP {detection['mAP']:.4f}  NDS {detection['NDS']:.4f}"]
    for cls, entry in detection["per_class"].items():
        if entry.get("ap_mean") is not None:
            aps = "  ".join(f"AP@{d}m {v:.3f}" for d, v in entry["ap"].items())
            lines.append(f"  {cls:<22} {aps}  mean {entry['ap_mean']:.4f}")
    lines.append(f"map (Chamfer AP): mAP {map_report['mAP']:.4f}")
    for cls, entry in map_report["per_class"].items():
        if entry["ap_mean"] is not None:
            aps = "  ".join(f"AP@{t}m {v:.3f}" for t, v in entry["ap"].items())
            lines.append(f"  {cls:<22} {aps}  mean {entry['ap_mean']:.4f}  (GT {entry['num_gt']})")
        else:
            lines.append(f"  {cls:<22} no GT in the evaluated samples")
    return "\n".join(lines)


def _run_checkpoint(args: argparse.Namespace) -> int:
    """``dima eval --checkpoint``: plans, detection AP and map AP of a stage-1 planner on one split."""
    import torch
    from nuscenes import NuScenes

    from dima_core.data.nuscenes_reader import NuScenesReader
    from dima_core.eval.detection_metrics import (
        decode_detections,
        devkit_detection_eval,
        devkit_split_name,
        gt_detections,
        matching_detection_ap,
    )
    from dima_core.eval.evaluate import baseline_planners, combine_reports, evaluate_planners, report_tables
    from dima_core.eval.map_metrics import decode_map, gt_map, map_ap
    from dima_core.eval.planner_inference import eval_index, inference_dataset, run_planner
    from dima_core.eval.results_file import write_results

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")

    from dima_core.eval.dima_modes import load_planner_for_mode_cli

    # --mode: vision (the planner), mllm (the teacher's plan head), dual (max-pooled features); dima_modes.py.
    loaded = load_planner_for_mode_cli(args.checkpoint, args.mode)
    name = args.name or loaded.model_config.name + ("" if args.mode == "vision" else f"_{args.mode}")
    logger.info("planner %s from %s (step %d)", name, loaded.checkpoint, loaded.step)
    nusc = NuScenes(version=args.version, dataroot=str(Path(args.dataroot).resolve()), verbose=False)
    split = None if args.split == "all" else args.split
    index = eval_index(loaded, args.dataroot, args.version, split, args.index, tuple(args.longtail_tokens), nusc=nusc)
    dataset = inference_dataset(loaded, index, split)
    if len(dataset) == 0:
        raise ValueError(f"split '{args.split}' of {args.dataroot} ({args.version}) has no samples")
    inference = run_planner(
        loaded.model, dataset, batch_size=args.batch_size, device=device, num_workers=args.num_workers
    )
    samples = [index.get(token) for token in dataset.tokens]

    if args.results_out:
        write_results(
            args.results_out,
            inference.trajectories,
            meta={"method": name, "checkpoint": loaded.checkpoint, "step": loaded.step, "split": args.split},
        )
        print(f"results written to {args.results_out}")

    # Planning: the model and the baselines on the same samples (the AD-MLP reads the train split without maps).
    reader = NuScenesReader(
        args.dataroot, args.version, with_map=False, longtail_token_files=list(args.longtail_tokens), nusc=nusc
    )
    admlp = _fit_or_load_admlp(args, reader)
    baselines = baseline_planners(admlp)  # type: ignore[arg-type]
    if name in baselines:
        raise ValueError(f"method name '{name}' is also a baseline's name; pass another --name")
    plans = inference.trajectories
    reports = evaluate_planners(samples, {name: lambda s: plans[s.token], **baselines})

    # Detection: the devkit's DetectionEval when it can name the split, else the matching-based AP.
    predictions = {
        token: decode_detections(p.agent_boxes, p.agent_scores, p.agent_velocities, top_k=args.det_top_k)
        for token, p in inference.predictions.items()
    }
    eval_set = devkit_split_name(reader, split)
    if eval_set is not None and set(dataset.tokens) == set(reader.sample_tokens(split)):
        det_dir = args.detection_dir or str(Path(args.out).parent / "detection_eval" if args.out else "detection_eval")
        detection = devkit_detection_eval(
            nusc, predictions, {s.token: s.ego_to_global for s in samples}, eval_set, det_dir
        )
    else:
        detection = matching_detection_ap({s.token: gt_detections(s) for s in samples}, predictions)
    map_report = map_ap(
        {s.token: gt_map(s) for s in samples},
        {token: decode_map(p.map_polylines, p.map_scores) for token, p in inference.predictions.items()},
    )

    report = combine_reports(
        name,
        reports,
        split=args.split,
        dataroot=str(Path(args.dataroot).resolve()),
        version=args.version,
        source={
            "checkpoint": loaded.checkpoint,
            "step": loaded.step,
            "model": loaded.model_config.name,
            "mode": args.mode,
            "results_file": str(Path(args.results_out).resolve()) if args.results_out else None,
        },
        detection=detection,
        map=map_report,
        inference=inference.latency_summary(),
    )
    if admlp is not None:  # how far its test inputs lay outside what it was fitted on (baselines.py)
        report["baselines"][admlp.name]["input_range"] = admlp.input_report()  # type: ignore[attr-defined]
    print(report_tables(reports))
    print()
    print(_perception_table(detection, map_report))
    latency = inference.latency_summary()
    if latency["mean_ms_per_frame"] is not None:
        print(f"\ninference: {latency['mean_ms_per_frame']:.1f} ms/frame (batch {args.batch_size}, {device})")
    if args.out:
        _write_report(report, args.out)
    return 0
