"""``dima ask``: ask the MLLM teacher of a stage-2 checkpoint a question about one sample.

    dima ask --checkpoint runs/stage2_tiny --dataroot data/synth --version v1.0-synth --sample 12 \\
        "What should the ego vehicle do next?" [--max-new-tokens 64] [--index INDEX] [--device cpu]

The planner's encoder runs on the sample's cameras (as training feeds them); the teacher answers greedily,
grounded on the resulting BEAM tokens. ``--sample`` is a sample token or an integer position among all samples of
the index. Prints the answer and the latency (encoder + generation). Questions longer than
``--max-question-tokens`` (default: the checkpoint's ``joint.max_question_tokens``) are refused with an error.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ask",
        help="ask a stage-2 checkpoint's MLLM a question about one sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="stage-2 checkpoint file or run directory")
    parser.add_argument("--dataroot", required=True, help="nuScenes (or synthetic world) root")
    parser.add_argument("--version", required=True, help="table version, e.g. v1.0-synth")
    parser.add_argument("--index", default=None, help="cached index (`dima data index`) at the model's map size")
    parser.add_argument("--sample", required=True, help="sample token, or an integer position in the index")
    parser.add_argument("question", help="the question (quote it)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="generation budget (tokens)")
    parser.add_argument(
        "--max-question-tokens",
        type=int,
        default=None,
        help="refuse longer questions (default: the checkpoint's joint.max_question_tokens)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from dima_core.data.dataset import collate
    from dima_core.eval.dima_modes import loaded_planner_view
    from dima_core.eval.planner_inference import eval_index
    from dima_core.models.dima import DEFAULT_MAX_QUESTION_TOKENS, answer_question, check_question, load_dima

    if args.max_new_tokens < 1:
        raise ValueError("--max-new-tokens must be >= 1")
    loaded = load_dima(args.checkpoint, mode="mllm")
    limit = args.max_question_tokens or int(
        (loaded.train_config.get("joint") or {}).get("max_question_tokens", DEFAULT_MAX_QUESTION_TOKENS)
    )
    check_question(loaded.model.teacher.tokenizer, args.question, limit)  # before touching the data
    view = loaded_planner_view(loaded)
    index = eval_index(view, args.dataroot, args.version, None, index_path=args.index)
    from dima_core.eval.planner_inference import inference_dataset

    dataset = inference_dataset(view, index, None)
    if args.sample.isdigit():
        position = int(args.sample)
        if position >= len(dataset):
            raise ValueError(f"--sample {position}: the index has {len(dataset)} samples")
    elif args.sample in dataset.tokens:
        position = dataset.tokens.index(args.sample)
    else:
        raise ValueError(f"--sample {args.sample}: no such sample token in {args.dataroot} ({args.version})")
    batch = collate([dataset[position]])
    model = loaded.model.to(torch.device(args.device))
    answer, latency_ms = answer_question(model, batch, args.question, args.max_new_tokens, limit)
    print(f"sample: {batch['token'][0]}")
    print(f"question: {args.question}")
    print(f"answer: {answer}")
    print(f"latency: {latency_ms:.1f} ms (encoder + generation, {args.device})")
    return 0
