"""dima_core imports no ROS, and two checks hold it there.

- The ruff banned-api rule (ruff.toml, TID251) fires on every form of ROS import in a dima_core file, at module level
  or inside a function, and on nothing outside dima_core. Ruff reads the source from stdin as if it were at the given
  path, with the repository's ruff.toml: nothing is written into the shared tree.
- The ``dima`` CLI builds and answers ``--help`` (top level, every group, every ROS-free command) in a Python where
  importing rclpy, the ROS interfaces or dima_ros fails, as on a machine without ROS; the ROS commands then say that
  they need ROS and exit with status 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# One banned import per line, each using its name (so pyflakes stays quiet and only the rule under test speaks).
BANNED_IMPORTS = {
    "import rclpy": "rclpy",
    "import rclpy.node": "rclpy",
    "from rclpy.qos import QoSProfile": "rclpy",
    "from dima.msg import Trajectory": "dima.msg",
    "import dima.srv": "dima.srv",
    "from dima import srv": "dima.srv",
    "from dima_ros.bringup import run": "dima_ros",
    "import dima_ros.bag_player": "dima_ros",
}


def _ruff(source: str, as_path: str) -> subprocess.CompletedProcess:
    # Only the rules the probes are about (pyflakes and the ban), with the rest of ruff.toml as it is (its banned
    # names and per-file ignores): the probe snippets are deliberately not import-sorted.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--select",
            "F,TID251",
            "--output-format",
            "concise",
            "--stdin-filename",
            as_path,
            "-",
        ],
        input=source,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("statement", sorted(BANNED_IMPORTS))
@pytest.mark.parametrize("nested", [False, True], ids=["module_level", "in_function"])
def test_ruff_bans_ros_imports_in_dima_core(statement: str, nested: bool) -> None:
    name = statement.split()[-1]
    if nested:
        source = f"def handler():\n    {statement}\n    return {name}\n"
    else:
        source = f"{statement}\n\nprint({name})\n"
    proc = _ruff(source, "dima_core/commands/ros_probe.py")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"TID251 `{BANNED_IMPORTS[statement]}` is banned" in proc.stdout, proc.stdout


def test_ruff_allows_ros_imports_outside_dima_core() -> None:
    source = "".join(f"{statement}\n" for statement in sorted(BANNED_IMPORTS))
    source += "print(" + ", ".join(sorted({s.split()[-1] for s in BANNED_IMPORTS})) + ")\n"
    for path in ("dima_ros/ros_probe.py", "benchmarks/ros_probe.py", "test/test_ros_probe.py"):
        proc = _ruff(source, path)
        assert proc.returncode == 0, f"{path}: {proc.stdout}{proc.stderr}"
    # The ROS-free part of the same imports stays allowed in dima_core (the rule is not a blanket `dima` ban).
    proc = _ruff("import dima_core.bag.topics\n\nprint(dima_core)\n", "dima_core/commands/ros_probe.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dima_core_tree_passes_the_rule() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID251", "dima_core"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Runs in a fresh interpreter: a meta-path finder makes every ROS import fail as on a machine without ROS, then the
# CLI answers each --help (argparse exits 0) and each ROS command (status 2 with the message, on stderr).
_WITHOUT_ROS = textwrap.dedent("""
    import contextlib, io, json, sys

    BLOCKED = ("rclpy", "dima_ros", "dima")  # "dima" is the colcon-built interfaces package (dima.msg / dima.srv)

    class NoRos:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: no ROS)", name=name)
            return None

    sys.meta_path.insert(0, NoRos())
    from dima_core.cli import main

    results = {}
    for argv in json.loads(sys.argv[1]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
        results[" ".join(argv)] = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"results": results, "loaded": loaded}))
""")

HELP_COMMANDS = [
    ["--help"],
    ["data", "--help"],
    ["data", "synth", "--help"],
    ["bench", "--help"],
    ["bench", "latency", "--help"],
    ["bench", "closed-loop", "--help"],
    ["bag", "--help"],
    ["bag", "convert", "--help"],
    ["bag", "info", "--help"],
    ["eval", "--help"],
    ["train", "--help"],
    ["export", "--help"],
    ["sim", "--help"],
]
ROS_COMMANDS = [["ros", "--help"], ["ros", "bringup"], ["ros", "ask", "what next?"], ["bag", "play", "some.bag"]]


def test_cli_works_without_ros() -> None:
    import json

    env = dict(os.environ, PYTHONPATH=f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", COLUMNS="120")
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ROS, json.dumps(HELP_COMMANDS + ROS_COMMANDS)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = report["results"]
    assert report["loaded"] == [], f"ROS modules imported: {report['loaded']}"

    for argv in HELP_COMMANDS:
        result = results[" ".join(argv)]
        assert result["code"] == 0, (argv, result)
        assert result["out"].startswith("usage: dima"), (argv, result)
    top = results["--help"]["out"]
    for group in ("data", "bench", "eval", "eval-vqa", "train", "bag", "export", "ask", "viz", "ros", "sim"):
        assert f"    {group} " in top, f"`dima --help` does not list {group}:\n{top}"
    # The lazy ROS commands are listed with their help although their modules cannot be imported here.
    assert "ROS 2 nodes: bringup (pip-only launch), ask the MLLM node" in top
    assert "play a rosbag2 with rclpy" in results["bag --help"]["out"]

    for argv in ROS_COMMANDS:
        result = results[" ".join(argv)]
        assert result["code"] == 2, (argv, result)
        assert "not available here, it needs ROS 2" in result["err"], (argv, result)
        assert "dima_ros" in result["err"] and "source tools/env.sh" in result["err"], (argv, result)
