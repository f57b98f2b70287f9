"""``dima eval-vqa``: DriveLM-style VQA scores (accuracy, BLEU/ROUGE-L/CIDEr, c-tag match, final score).

    dima eval-vqa --pred PRED.json --gt GT.json [--out report.json] [--judge-model PATH]

PRED: DriveLM challenge output (list of {id, question, answer}), a submission ({"results": [...]}) or a nested
train-layout file with predicted answers in "A". GT: a nested DriveLM file (v1.1 train layout or the challenge
test_eval.json with "tag" lists) or a flat list of {id, question, answer, tag}. Untagged nested GT (such as
drivelm_synth.json) is tagged with DriveLM's extraction rule. Without --judge-model the GPT term is not computed and
the final score is also given with that term excluded and the weights renormalised. Details: docs/eval_vqa.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval-vqa",
        help="score DriveLM-style VQA answers: accuracy, BLEU/ROUGE-L/CIDEr, c-tag match, DriveLM final score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pred", required=True, metavar="FILE", help="predictions JSON")
    parser.add_argument("--gt", required=True, metavar="FILE", help="ground-truth JSON")
    parser.add_argument("--out", metavar="FILE", help="write the JSON report (with per-question scores) here")
    parser.add_argument(
        "--tags",
        choices=("auto", "file", "rule"),
        default="auto",
        help="GT tags: the file's 'tag' lists, DriveLM's extraction rule, or auto (file if present, else rule)",
    )
    parser.add_argument(
        "--no-graph-gating",
        action="store_true",
        help="score every tagged QA (DriveLM skips QAs about objects missed in the first answer)",
    )
    parser.add_argument(
        "--tokenizer",
        choices=("auto", "ptb", "python"),
        default="auto",
        help="caption tokenizer: Java PTB (as DriveLM), the pure-Python fallback, or auto",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="score GT questions without a prediction as empty answers instead of failing",
    )
    parser.add_argument(
        "--judge-model",
        metavar="PATH",
        help="local Hugging Face causal LM directory or .gguf file to compute the GPT term",
    )
    parser.add_argument("--judge-device", default=None, help="device for the judge (default: cuda if available)")
    parser.add_argument("--judge-max-new-tokens", type=int, default=8, help="judge reply length in tokens")
    parser.add_argument(
        "--judge-temperature",
        type=float,
        default=0.0,
        help="judge sampling temperature; 0 = greedy (DriveLM sampled gpt-3.5-turbo at 0.6)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from dima_core.eval.vqa import HFCausalLMJudge, evaluate_vqa, load_ground_truth, load_predictions

    gt = load_ground_truth(args.gt, tags=args.tags)
    predictions = load_predictions(args.pred)
    judge = None
    if args.judge_model:
        # No network: the judge loads from local files only (HF_HUB_OFFLINE guards any library default too).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        judge = HFCausalLMJudge.from_pretrained(
            args.judge_model,
            device=args.judge_device,
            max_new_tokens=args.judge_max_new_tokens,
            temperature=args.judge_temperature,
        )
    report = evaluate_vqa(
        gt,
        predictions,
        pred_source=args.pred,
        judge=judge,
        graph_gating=not args.no_graph_gating,
        tokenizer=args.tokenizer,
        allow_missing=args.allow_missing,
    )
    print(report.format_table())
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        os.replace(tmp, out)
        print(f"report written to {out}")
    return 0
