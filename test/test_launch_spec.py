"""The launch files and ``dima ros bringup`` share one node definition (dima_ros/launch_spec.py).

``launch`` / ``launch_ros`` are not installable pip-only, so the launch files are compiled and parsed here (they
import those only inside generate_launch_description) and checked to take their nodes, arguments and parameter
files from the spec; the bringup's ROS arguments are built from the same spec."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ros_helpers.testing import REPO_ROOT

LAUNCH_FILES = ("dima.launch.py", "replay_nuscenes.launch.py")


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_files_compile_and_use_the_shared_spec(name: str) -> None:
    path = REPO_ROOT / "launch" / name
    source = path.read_text()
    compile(source, str(path), "exec")
    tree = ast.parse(source)
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(getattr(n, "module", "") == "__future__" for n in top_imports), "launch must be imported lazily"
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    spec_imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "dima_ros.launch_spec"]
    assert spec_imports, f"{name} does not read dima_ros/launch_spec.py"
    names = {alias.name for node in spec_imports for alias in node.names}
    assert "LAUNCH_ARGUMENTS" in names
    if name == "dima.launch.py":
        assert {"NODES", "params_path", "is_enabled"} <= names


def test_spec_nodes_exist_and_have_their_files() -> None:
    from dima_ros.launch_spec import LAUNCH_ARGUMENTS, NODES

    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    arguments = {a.name for a in LAUNCH_ARGUMENTS}
    for spec in NODES:
        assert (REPO_ROOT / spec.params_file).is_file(), spec.params_file
        assert (REPO_ROOT / spec.module.replace(".", "/")).with_suffix(".py").is_file(), spec.module
        assert (REPO_ROOT / "scripts" / spec.executable).is_file() and f"scripts/{spec.executable}" in cmake
        assert spec.enabled_by is None or spec.enabled_by in arguments
        assert all(arg in arguments for _, arg in spec.launch_overrides)


def test_bringup_arguments_follow_the_spec() -> None:
    from dima_core.runtime.bringup_config import BringupConfig
    from dima_ros.bringup import enabled_nodes, load_bringup_config, node_arguments, parse_set
    from dima_ros.launch_spec import node_spec

    config = load_bringup_config(
        str(REPO_ROOT / "config" / "bringup.yaml"),
        parse_set(["planner.model.onnx_path=/m/p.onnx", "planner.model.threads=1"]),
    )
    assert [s.key for s in enabled_nodes(config)] == ["planner"]
    config.with_mllm = True
    config.use_sim_time = True
    assert [s.key for s in enabled_nodes(config)] == ["planner", "mllm"]
    spec = node_spec("planner")
    args = node_arguments(spec, config)
    assert args[:3] == ["--ros-args", "-r", "__node:=dima_planner"]
    assert args[args.index("--params-file") + 1] == str(REPO_ROOT / "config" / "planner_node.yaml")
    assert 'model.onnx_path:="/m/p.onnx"' in args and "model.threads:=1" in args and "use_sim_time:=true" in args
    for source, target in spec.remappings:
        assert f"{source}:={target}" in args
    mllm_args = node_arguments(node_spec("mllm"), config)
    assert "~/input/beam_tokens:=/dima_planner/output/beam_tokens" in mllm_args
    with pytest.raises(ValueError, match="NODE.PARAMETER=VALUE"):
        parse_set(["onnx_path=x"])
    with pytest.raises(ValueError, match="unknown node"):
        load_bringup_config(None, {"plannerr": {"a": 1}})
    assert isinstance(BringupConfig(), BringupConfig)


def test_dima_core_does_not_import_rclpy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, dima_core.cli, dima_ros.commands.ros, dima_core.runtime.mllm_service, "
        "dima_core.runtime.online_eval, dima_core.runtime.bringup_config; "
        "dima_core.cli.build_parser(); assert 'rclpy' not in sys.modules, 'rclpy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(REPO_ROOT))
