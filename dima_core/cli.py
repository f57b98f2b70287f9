"""The ``dima`` command line.

Every command is listed once, in :data:`COMMANDS`: a group (``dima data ...``) or a command with the
``"module:function"`` that declares it. The function takes the parent's sub-parsers and adds the command's parser
(arguments, ``set_defaults(func=run)``); ``run(args) -> int`` does the work. Command modules import
heavy libraries (torch, the devkit) inside ``run`` so ``dima --help`` stays fast.

The commands live where their dependencies do: ``dima_core/commands/`` (the ROS-free library), ``benchmarks/``
(``dima bench ...``) and ``dima_ros/commands/`` (``dima ros ...`` and ``dima bag play``, which need rclpy). dima_core
never imports ROS (a ruff banned-api rule, ruff.toml), so the ROS entries are named here only as strings and loaded
lazily: :data:`COMMANDS` gives their one-line help, and their module is imported only when the command is given.
``dima --help`` and every other command therefore work on a machine without ROS; where ``dima_ros`` or rclpy does not
import, a ROS command says so and exits with status 2 (as argparse does on a usage error).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from dima_core.config import ConfigError


@dataclass(frozen=True)
class Group:
    """A top-level command group without a handler of its own; the commands naming it as ``parent`` fill it.

    ``doc_from``: a module whose docstring is the group's ``--help`` description (printed as written).
    """

    name: str
    help: str
    doc_from: str = ""


@dataclass(frozen=True)
class Command:
    """One command: ``target`` (``"module:function"``) adds the parser called ``name`` under ``parent`` ("" = top).

    ``lazy_help``: set for a command whose module needs ROS (``dima_ros``). The parent's help lists the command with
    this text, and the module is imported only when the command is given, so building the parser never imports ROS.
    """

    parent: str
    name: str
    target: str
    lazy_help: str | None = None


# The whole command line, in the order of `dima --help` and of each group's help.
COMMANDS: tuple[Group | Command, ...] = (
    Group("data", "datasets: synthesize, index, inspect, generate QA"),
    Command("data", "synth", "dima_core.commands.data_synth:add_parser"),
    Command("data", "index", "dima_core.commands.data_index:add_parser"),
    Command("data", "cache", "dima_core.commands.data_cache:add_parser"),  # pre-decoded images at model resolution
    Command("data", "show", "dima_core.commands.data_show:add_parser"),
    Command("data", "qa", "dima_core.commands.data_qa:add_parser"),
    Group("bench", "benchmarks that write docs/benchmarks.md"),
    Command("bench", "synth", "benchmarks.synth:add_parser"),
    Command("bench", "distill", "benchmarks.distill:add_parser"),  # stage 1 vs DiMA stage 2 + the ablation ladder
    Command("bench", "planner", "benchmarks.planner:add_parser"),
    Command("bench", "latency", "benchmarks.latency:add_parser"),  # its ros pipeline imports dima_ros when it runs
    Command("bench", "train", "benchmarks.train:add_parser"),  # training-loop throughput and its time split
    Command("bench", "closed-loop", "benchmarks.closed_loop:add_parser"),  # planners vs baselines, closed loop
    Command("bench", "gpu", "benchmarks.gpu:add_parser"),  # GPU latency per runtime (tools/gpu_bench.sh)
    Command("", "eval", "dima_core.commands.eval:add_parser"),  # a single command, no sub-commands
    Command("", "eval-vqa", "dima_core.commands.eval_vqa:add_parser"),  # DriveLM-style VQA scores
    Command("", "train", "dima_core.commands.train:add_parser"),  # a single command, stages by flag
    Group(
        "bag",
        "replay bags: convert nuScenes scenes to rosbag2, play them with rclpy, inspect them",
        doc_from="dima_core.commands.bag",
    ),
    Command("bag", "convert", "dima_core.commands.bag:add_convert_parser"),
    Command(
        "bag",
        "play",
        "dima_ros.commands.bag:add_play_parser",
        lazy_help="play a rosbag2 with rclpy (pip-only `ros2 bag play --clock`)",
    ),
    Command("bag", "info", "dima_core.commands.bag:add_info_parser"),
    Command("", "export", "dima_core.commands.export:add_parser"),  # --format onnx|tensorrt
    Command("", "ask", "dima_core.commands.ask:add_parser"),  # the MLLM teacher answers a question
    Command("", "viz", "dima_core.commands.viz:add_parser"),  # --checkpoint CKPT | --results FILE
    Command(
        "",
        "ros",
        "dima_ros.commands.ros:add_parser",
        lazy_help="ROS 2 nodes: bringup (pip-only launch), ask the MLLM node",
    ),
    Command("", "sim", "dima_core.commands.sim:add_parser"),  # run | fit-admlp: the closed-loop simulator
    Command("", "weights", "dima_core.commands.weights:add_parser"),  # export | show: planner weights (safetensors)
)

# Top-level packages whose absence makes a lazy (ROS) command unavailable instead of an error: the ROS nodes package,
# rclpy and the colcon-built interfaces (`dima.msg` / `dima.srv`). Any other failed import is a bug and is raised.
ROS_PACKAGES = frozenset({"dima_ros", "rclpy", "dima"})


def _resolve(target: str) -> Callable[[argparse._SubParsersAction], argparse.ArgumentParser]:
    module_name, sep, function = target.partition(":")
    if not sep or not function:
        raise ValueError(f"command target {target!r}: expected 'module:function'")
    return getattr(importlib.import_module(module_name), function)


def _add(subparsers: argparse._SubParsersAction, command: Command) -> None:
    """Call the command's function and check that it added the parser the registry names."""
    _resolve(command.target)(subparsers)
    if command.name not in subparsers.choices:
        raise RuntimeError(f"{command.target} did not add the command {command.name!r} that dima_core/cli.py names")


def _is_missing_ros(exc: ImportError) -> bool:
    """Whether ``exc`` is a ROS package failing to import (not a bug in the command's module)."""
    return (exc.name or "").split(".")[0] in ROS_PACKAGES


class _CommandParsers(argparse._SubParsersAction):
    """Sub-parsers that load lazy (ROS) commands on first use.

    A lazy command starts as a placeholder parser (so argparse accepts its name and the parent's help lists it);
    when argparse selects it, :meth:`__call__` swaps in the real parser from the command's module, or exits with
    status 2 and a message naming what is missing when ROS does not import there.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, Command] = {}

    def add_lazy(self, command: Command) -> None:
        self.add_parser(command.name, help=command.lazy_help)
        self._lazy[command.name] = command

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        if name in self._lazy:  # the real parser of a listed lazy command: the registry's line stays the listing
            kwargs.pop("help", None)
        return super().add_parser(name, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        command = self._lazy.get(values[0])
        if command is not None:
            self._load(parser, command)
        super().__call__(parser, namespace, values, option_string)

    def _load(self, parser: argparse.ArgumentParser, command: Command) -> None:
        order = list(self.choices)  # the real parser takes the placeholder's place (usage lists choices in order)
        placeholder = self.choices.pop(command.name)
        try:
            _add(self, command)
        except ImportError as exc:
            if not _is_missing_ros(exc):
                raise
            # Like an argparse usage error: the message on stderr, status 2 (also for `--help`: it cannot be shown).
            parser.exit(
                2,
                f"{placeholder.prog}: not available here, it needs ROS 2 ({exc}): run "
                "`source tools/env.sh` (pip-only ROS 2, see docs/setup.md) or source a ROS 2 installation\n",
            )
        finally:
            del self._lazy[command.name]
        parsers = {name: self.choices[name] for name in order}
        self.choices.clear()
        self.choices.update(parsers)


def build_parser() -> argparse.ArgumentParser:
    """The ``dima`` parser from :data:`COMMANDS` (imports the ROS-free command modules, never ROS)."""
    parser = argparse.ArgumentParser(prog="dima", description="DiMA: distilled multi-modal LLM planner for ROS 2")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top = parser.add_subparsers(dest="group", required=True, action=_CommandParsers)
    groups: dict[str, _CommandParsers] = {"": top}
    for entry in COMMANDS:
        if isinstance(entry, Group):
            described = {}
            if entry.doc_from:
                described = {
                    "description": importlib.import_module(entry.doc_from).__doc__,
                    "formatter_class": argparse.RawDescriptionHelpFormatter,
                }
            group = top.add_parser(entry.name, help=entry.help, **described)
            groups[entry.name] = group.add_subparsers(dest="command", required=True, action=_CommandParsers)
        elif entry.lazy_help is not None:
            groups[entry.parent].add_lazy(entry)
        else:
            _add(groups[entry.parent], entry)
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
        from dima_core.io.checkpoint import CheckpointError

        if isinstance(exc, CheckpointError):
            print(f"dima: checkpoint error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
