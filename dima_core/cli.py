"""The ``dima`` command line.

Each command lives in ``dima_core/commands/<name>.py`` with ``add_parser(subparsers)`` (arguments, and
``set_defaults(func=run)``) and ``run(args) -> int``. Command modules import heavy libraries (torch, the devkit)
inside ``run`` so ``dima --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dima_core.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from dima_core.commands import ask as ask_command
    from benchmarks import distill as bench_distill
    from benchmarks import latency as bench_latency
    from dima_core.commands import bag as bag_command
    from dima_core.commands import bench_planner, bench_synth, data_index, data_qa, data_show, data_synth
    from dima_core.commands import bench_closed_loop, bench_train, data_cache
    from dima_core.commands import eval as eval_command
    from dima_core.commands import export as export_command
    from dima_core.commands import eval_vqa
    from dima_core.commands import ros as ros_command
    from dima_core.commands import sim as sim_command
    from dima_core.commands import train as train_command
    from dima_core.commands import viz as viz_command
    from dima_core.commands import weights as weights_command

    parser = argparse.ArgumentParser(prog="dima", description="DiMA: distilled multi-modal LLM planner for ROS 2")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    groups = parser.add_subparsers(dest="group", required=True)

    data = groups.add_parser("data", help="datasets: synthesize, index, inspect, generate QA")
    data_commands = data.add_subparsers(dest="command", required=True)
    data_synth.add_parser(data_commands)
    data_index.add_parser(data_commands)
    data_cache.add_parser(data_commands)  # pre-decoded images at model resolution
    data_show.add_parser(data_commands)
    data_qa.add_parser(data_commands)

    bench = groups.add_parser("bench", help="benchmarks that write docs/benchmarks.md")
    bench_commands = bench.add_subparsers(dest="command", required=True)
    bench_synth.add_parser(bench_commands)
    bench_distill.add_parser(bench_commands)  # stage 1 vs DiMA stage 2 + the ablation ladder
    bench_planner.add_parser(bench_commands)
    bench_latency.add_parser(bench_commands)
    bench_train.add_parser(bench_commands)  # training-loop throughput and its time split
    bench_closed_loop.add_parser(bench_commands)  # planners vs baselines in the closed-loop simulator

    eval_command.add_parser(groups)  # `dima eval ...`: a single command, no sub-commands
    eval_vqa.add_parser(groups)  # `dima eval-vqa --pred P --gt G`: DriveLM-style VQA scores
    train_command.add_parser(groups)  # `dima train --stage N ...`: a single command, stages by flag
    bag_command.add_parser(groups)  # `dima bag convert|play|info`: replay bags
    export_command.add_parser(groups)  # `dima export --format onnx|tensorrt ...`: a single command
    ask_command.add_parser(groups)  # `dima ask --checkpoint CKPT ... "question"`: the MLLM teacher answers
    viz_command.add_parser(groups)  # `dima viz --checkpoint CKPT | --results FILE ...`
    ros_command.add_parser(groups)  # `dima ros bringup|ask`: rclpy is imported only when they run
    sim_command.add_parser(groups)  # `dima sim run|fit-admlp`: the closed-loop simulator
    weights_command.add_parser(groups)  # `dima weights export|show`: planner weights files (safetensors)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # the command line as given, for reports
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"dima: configuration error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"dima: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        # Imported here, on the error path only: the checkpoint module pulls in torch.
        from dima_core.training.checkpoint import CheckpointError

        if isinstance(exc, CheckpointError):
            print(f"dima: checkpoint error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
