"""``dima ros``: run the DiMA ROS 2 nodes pip-only and talk to them.

    dima ros bringup --config config/bringup.yaml [--with-mllm] [--with-evaluator] [--bag BAG [--rate R]]
                     [--report R.json] [--set NODE.PARAM=VALUE ...] [--echo] [--linger S]
    dima ros bringup --sim [--scenarios ...] [--episodes N] [--seed S] [--seconds T] [--timing lockstep|realtime]
                     [--sim-config F] [--sim-out DIR] [--with-mllm] --set planner.model.onnx_path=planner.onnx
    dima ros ask "What should the ego vehicle do next?" [--service /dima_mllm/ask] [--stamp-ns NS] [--timeout S]

``bringup`` starts the nodes of ``dima_ros/launch_spec.py`` (the same definition ``launch/dima.launch.py`` uses)
in one process; see :mod:`dima_ros.bringup`. ``ask`` is a tiny AskScene client: it prints the answer and the
latency, or the node's error (exit status 1). rclpy is imported only when a command runs: ``dima --help`` and
every other command work without a ROS environment.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    # The dima CLI imports this module only when `dima ros` is given; its one-line help is in dima_core/cli.py.
    parser = subparsers.add_parser("ros", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    bringup = commands.add_parser("bringup", help="planner (+ MLLM node, evaluator) in one process")
    bringup.add_argument("--config", help="bringup YAML (config/bringup.yaml); default: built-in defaults")
    bringup.add_argument("--with-mllm", action="store_true", help="start the MLLM node")
    bringup.add_argument("--with-evaluator", action="store_true", help="start the online evaluator")
    bringup.add_argument("--bag", help="replay this bag (dima bag convert) and report the online metrics")
    bringup.add_argument(
        "--rate",
        type=float,
        default=None,
        help="--bag: playback rate (default: the config's replay_rate); below 1 when the planner is "
        "slower than the keyframe rate, which would otherwise drop frames",
    )
    bringup.add_argument("--report", help="evaluator JSON report path (turns the evaluator on)")
    bringup.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override a node parameter (repeatable), e.g. planner.model.backend=torch",
    )
    bringup.add_argument("--use-sim-time", action="store_true", help="use /clock (implied by --bag)")
    bringup.add_argument("--echo", action="store_true", help="print every planned trajectory")
    bringup.add_argument(
        "--linger",
        type=float,
        default=0.0,
        metavar="S",
        help="--bag / --sim: keep the nodes running S seconds after the replay or the last episode",
    )
    sim = bringup.add_argument_group(
        "closed loop (--sim): simulator node parameters, see config/sim_node.yaml; "
        "--set sim.PARAM=VALUE wins over these"
    )
    sim.add_argument(
        "--sim",
        action="store_true",
        help="start the closed-loop simulator: the planner drives it, the table is printed at the end",
    )
    sim.add_argument("--scenarios", nargs="+", default=None, help="scenario names or 'all'")
    sim.add_argument("--episodes", type=int, default=None, help="episodes (seeds) per scenario")
    sim.add_argument("--seed", type=int, default=None, help="first seed")
    sim.add_argument("--seconds", type=float, default=None, help="episode length, seconds")
    sim.add_argument("--timing", choices=("lockstep", "realtime"), default=None, help="simulator timing mode")
    sim.add_argument("--sim-config", default=None, help="SimConfig YAML (default: the node's, config/sim.yaml)")
    sim.add_argument("--sim-out", default=None, help="simulator output folder (report.json, table.md, episodes/)")
    bringup.set_defaults(func=run_bringup)

    ask = commands.add_parser("ask", help="ask the MLLM node a question (AskScene)")
    ask.add_argument("question", help="the question (quote it)")
    ask.add_argument("--service", default="/dima_mllm/ask", help="AskScene service name")
    ask.add_argument("--stamp-ns", type=int, default=0, help="answer on the BEAM tokens of this stamp (0: latest)")
    ask.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the service and the answer")
    ask.set_defaults(func=run_ask)
    return parser


def run_bringup(args: argparse.Namespace) -> int:
    from dima_ros.bringup import load_bringup_config, parse_set, run

    config = load_bringup_config(args.config, parse_set(args.set))
    config.with_mllm = config.with_mllm or args.with_mllm
    config.with_evaluator = config.with_evaluator or args.with_evaluator
    config.use_sim_time = config.use_sim_time or args.use_sim_time
    config.with_sim = config.with_sim or args.sim
    sim_flags = [
        ("--scenarios", "scenarios", args.scenarios),
        ("--episodes", "episodes", args.episodes),
        ("--seed", "seed", args.seed),
        ("--seconds", "episode_seconds", args.seconds),
        ("--timing", "timing", args.timing),
        ("--sim-config", "sim_config", args.sim_config),
        ("--sim-out", "output_dir", args.sim_out),
    ]
    given = [(flag, name, value) for flag, name, value in sim_flags if value is not None]
    if given and not config.with_sim:
        raise ValueError(f"{', '.join(flag for flag, _, _ in given)}: simulator options need --sim")
    for _, name, value in given:
        config.parameters.setdefault("sim", {}).setdefault(name, value)
    if args.rate is not None:
        if args.rate <= 0:
            raise ValueError("--rate must be > 0")
        config.replay_rate = args.rate
    return run(config, bag=args.bag, report=args.report, echo=args.echo, linger_s=args.linger)


def run_ask(args: argparse.Namespace) -> int:
    import time

    import rclpy

    from dima.srv import AskScene

    rclpy.init(args=None)
    node = rclpy.create_node("dima_ask_client")
    try:
        client = node.create_client(AskScene, args.service)
        deadline = time.monotonic() + args.timeout
        if not client.wait_for_service(timeout_sec=args.timeout):
            print(
                f"dima ros ask: no service {args.service} within {args.timeout:.0f} s (is the MLLM node "
                "running? `dima ros bringup --with-mllm`)",
                file=sys.stderr,
            )
            return 2
        request = AskScene.Request(question=args.question)
        request.stamp.sec, request.stamp.nanosec = divmod(args.stamp_ns, 1_000_000_000)
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=max(deadline - time.monotonic(), 0.1))
        if not future.done():
            print(f"dima ros ask: no answer within {args.timeout:.0f} s", file=sys.stderr)
            return 2
        response = future.result()
        print(f"question: {args.question}")
        if not response.success:
            print(f"error: {response.error}")
            return 1
        print(f"answer: {response.answer}")
        print(f"latency: {response.latency_ms:.1f} ms (MLLM node, generation)")
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


__all__ = ["add_parser", "run_ask", "run_bringup"]
