"""``dima eval``: open-loop planning metrics (both conventions) of a planner, with the baselines, in one table.

    dima eval --results FILE --dataroot DIR --version V [--split val] [--out report.json]
              [--longtail-tokens FILE] [--name NAME] [--no-admlp] [--admlp-train-split train]

Results-file mode scores ``FILE`` (DESIGN.md section 3 interface, :mod:`dima_core.eval.results_file`) against the
GT of ``--split``. Tokens of other splits in the file are ignored (counted); tokens the dataset does not have are an
error naming the token; split samples the file lacks are reported and counted, not scored. The constant-velocity
baseline and the AD-MLP baseline (fitted here on ``--admlp-train-split``) are scored on exactly the same samples.
The source of predictions is one mutually exclusive argument group (``--results`` today), so a checkpoint mode adds
its flag to the group and a planner callable in :func:`_primary_planner`.
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
    parser.add_argument("--dataroot", required=True, help="nuScenes (or synthetic world) root")
    parser.add_argument("--version", required=True, help="table version, e.g. v1.0-mini or v1.0-trainval")
    parser.add_argument("--split", default="val", help="split to score ('all' for every sample); default val")
    parser.add_argument("--out", metavar="FILE", help="write the JSON report here")
    parser.add_argument(
        "--longtail-tokens", metavar="FILE", action="append", default=[],
        help='JSON {"<split name>": [sample tokens]} adding long-tail split tags (real nuScenes); repeatable',
    )
    parser.add_argument("--name", help="row name of the scored method (default: the results file's stem)")
    parser.add_argument("--no-admlp", action="store_true", help="skip the AD-MLP (ego-status MLP) baseline")
    parser.add_argument("--admlp-train-split", default="train", help="split the AD-MLP baseline is fitted on")
    parser.add_argument("--admlp-epochs", type=int, default=300, help="AD-MLP training epochs")
    parser.add_argument(
        "--admlp-model", metavar="FILE",
        help="AD-MLP weights: loaded when FILE exists, else fitted and saved there (skips refitting on re-runs)",
    )
    parser.set_defaults(func=run)
    return parser


def _primary_planner(args: argparse.Namespace, reader: "object", eval_tokens: list[str]) -> tuple[str, "object", dict]:
    """(method name, planner callable, report extras) for the prediction source chosen on the command line."""
    from dima_core.eval.results_file import load_results, match_tokens

    results = load_results(args.results, known_tokens=reader.sample_tokens(None))  # type: ignore[attr-defined]
    match = match_tokens(results, eval_tokens)
    if match.missing:
        logger.warning(
            "%d of %d '%s' samples have no result in %s and are not scored (first: %s)",
            len(match.missing), len(eval_tokens), args.split, args.results,
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


def run(args: argparse.Namespace) -> int:
    from dima_core.data.nuscenes_reader import NuScenesReader
    from dima_core.eval.baselines import ADMLPBaseline, ADMLPConfig
    from dima_core.eval.evaluate import (
        baseline_planners,
        combine_reports,
        evaluate_planners,
        fit_admlp,
        report_tables,
    )

    reader = NuScenesReader(
        args.dataroot, args.version, with_map=False, longtail_token_files=list(args.longtail_tokens)
    )
    split = None if args.split == "all" else args.split
    eval_tokens = reader.sample_tokens(split)
    if not eval_tokens:
        raise ValueError(f"split '{args.split}' of {args.dataroot} ({args.version}) has no samples")

    name, planner, extras = _primary_planner(args, reader, eval_tokens)
    scored_tokens: list[str] = extras.pop("_scored_tokens")

    admlp = None
    if not args.no_admlp:
        if args.admlp_model and Path(args.admlp_model).is_file():
            admlp = ADMLPBaseline.load(args.admlp_model)
            logger.info("AD-MLP baseline loaded from %s", args.admlp_model)
        else:
            train_tokens = reader.sample_tokens(args.admlp_train_split)
            admlp = fit_admlp(
                (reader.build_sample(t) for t in train_tokens), ADMLPConfig(epochs=args.admlp_epochs)
            )
            if admlp is not None and args.admlp_model:
                admlp.save(args.admlp_model)
    baselines = baseline_planners(admlp)
    if name in baselines:
        raise ValueError(f"method name '{name}' is also a baseline's name; pass another --name")
    planners = {name: planner, **baselines}

    reports = evaluate_planners((reader.build_sample(t) for t in scored_tokens), planners)
    report = combine_reports(
        name, reports, split=args.split, dataroot=str(Path(args.dataroot).resolve()), version=args.version,
        **extras,
    )
    print(report_tables(reports))
    if report["num_missing_results"]:
        print(f"\n{report['num_missing_results']} samples of split '{args.split}' had no result (not scored).")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, out)
        print(f"\nreport written to {out}")
    return 0
