"""The one definition of the DiMA ROS graph: which nodes, from which modules, with which parameter files and
remappings, enabled by which argument. Used by BOTH ``launch/*.launch.py`` (a real ROS 2 install, one process per
node) and ``dima ros bringup`` (pip-only, every node in one process on a MultiThreadedExecutor), so the two
cannot drift. Plain Python (no rclpy, no launch): importable anywhere, tested without ROS.

Parameter precedence (both paths): the node's YAML file (``config/<node>.yaml``, ``/**: ros__parameters:``), then
what the graph itself implies (:func:`graph_parameter_overrides`: with the simulator, the planner takes the
simulator rig's camera extrinsics), then the per-node overrides (``dima ros bringup``'s config file, or the launch
arguments of :data:`LAUNCH_ARGUMENTS`), then ``use_sim_time``.

The closed loop (``with_sim``): the simulator node publishes the vehicle topics the planner's remappings name and
reads the planner's trajectory; ``launch/sim_closed_loop.launch.py`` and ``dima ros bringup --sim`` start it with
the planner (and optionally the MLLM node), ``use_sim_time`` on (the simulator publishes ``/clock``) and without
the evaluator (a simulation has no replayed ground truth; the simulator scores its own episodes).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dima_core.bag.topics import COMMAND_TOPIC, GROUND_TRUTH_TOPIC, ODOM_TOPIC, camera_info_topic, image_topic
from dima_core.constants import CAMERA_NAMES

PACKAGE = "dima"
PLANNER_NAME = "dima_planner"
MLLM_NAME = "dima_mllm"
EVALUATOR_NAME = "dima_evaluator"
SIM_NAME = "dima_sim"


def _planner_remappings() -> tuple[tuple[str, str], ...]:
    """Planner inputs -> the topics a DiMA replay bag (and a nuScenes-like vehicle) publishes."""
    pairs: list[tuple[str, str]] = []
    for cam in CAMERA_NAMES:
        pairs.append((f"~/input/camera/{cam}/image", image_topic(cam)))
        pairs.append((f"~/input/camera/{cam}/camera_info", camera_info_topic(cam)))
    pairs += [("~/input/odometry", ODOM_TOPIC), ("~/input/command", COMMAND_TOPIC), ("~/input/acceleration", "/accel")]
    return tuple(pairs)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph.

    key: short name used in config files and flags (``planner``, ``mllm``, ``evaluator``).
    name: ROS node name. module / class_name: where the rclpy node class lives. executable: the installed
    entry point the launch files start (``lib/dima/<executable>``). params_file: default parameter file, relative
    to the package share directory (installed) or the repository root (source tree). remappings: (from, to).
    enabled_by: launch argument / bringup flag that turns the node on (None: always on). launch_overrides:
    node parameter -> launch argument whose non-empty value overrides it. launch_override_types: node parameter ->
    how its launch-argument text becomes the parameter's type (``int``, ``float``, ``list``: comma- or
    space-separated strings); parameters not named stay strings. ends_launch: the launch
    ends when this node's process exits (the simulator after its last episode).
    """

    key: str
    name: str
    module: str
    class_name: str
    executable: str
    params_file: str
    remappings: tuple[tuple[str, str], ...] = ()
    enabled_by: str | None = None
    launch_overrides: tuple[tuple[str, str], ...] = ()
    launch_override_types: tuple[tuple[str, Literal["int", "float", "list"]], ...] = ()
    ends_launch: bool = False

    def node_class(self) -> Callable[..., Any]:
        """The rclpy node class (imports rclpy: call only where ROS is available)."""
        return getattr(importlib.import_module(self.module), self.class_name)


NODES: tuple[NodeSpec, ...] = (
    NodeSpec(
        key="planner",
        name=PLANNER_NAME,
        module="dima_ros.planner_node",
        class_name="PlannerNode",
        executable="planner_node",
        params_file="config/planner_node.yaml",
        remappings=_planner_remappings(),
        launch_overrides=(
            ("model.backend", "backend"),
            ("model.onnx_path", "onnx_path"),
            ("model.checkpoint_path", "checkpoint"),
            ("model.engine_dir", "engine_dir"),
        ),
    ),
    NodeSpec(
        key="mllm",
        name=MLLM_NAME,
        module="dima_ros.mllm_node",
        class_name="MllmNode",
        executable="mllm_node",
        params_file="config/mllm_node.yaml",
        remappings=(("~/input/beam_tokens", f"/{PLANNER_NAME}/output/beam_tokens"),),
        enabled_by="with_mllm",
        launch_overrides=(("checkpoint", "mllm_checkpoint"),),
    ),
    NodeSpec(
        key="evaluator",
        name=EVALUATOR_NAME,
        module="dima_ros.evaluator_node",
        class_name="EvaluatorNode",
        executable="evaluator_node",
        params_file="config/evaluator_node.yaml",
        remappings=(
            ("~/input/trajectory", f"/{PLANNER_NAME}/output/trajectory"),
            ("~/input/ground_truth", GROUND_TRUTH_TOPIC),
        ),
        enabled_by="with_evaluator",
        launch_overrides=(("report_path", "report_path"),),
    ),
    # Last: in one process (dima ros bringup) the planner exists, subscribed, before the simulator starts.
    NodeSpec(
        key="sim",
        name=SIM_NAME,
        module="dima_ros.sim_node",
        class_name="SimNode",
        executable="sim_node",
        params_file="config/sim_node.yaml",
        remappings=(("~/input/trajectory", f"/{PLANNER_NAME}/output/trajectory"),),
        enabled_by="with_sim",
        launch_overrides=(
            ("scenarios", "scenarios"),
            ("episodes", "episodes"),
            ("seed", "seed"),
            ("episode_seconds", "seconds"),
            ("timing", "timing"),
            ("sim_config", "sim_config"),
            ("output_dir", "sim_output_dir"),
        ),
        launch_override_types=(
            ("scenarios", "list"),
            ("episodes", "int"),
            ("seed", "int"),
            ("episode_seconds", "float"),
        ),
        ends_launch=True,
    ),
)


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


# The launch files declare exactly these (dima.launch.py all but the replay ones; replay_nuscenes.launch.py all).
LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("config_dir", "", "directory of the node parameter files (default: the package's config/)"),
    LaunchArgument("backend", "", "planner backend: torch | onnxruntime | tensorrt (default: the YAML's)"),
    LaunchArgument("onnx_path", "", "exported planner ONNX (onnxruntime / tensorrt backends)"),
    LaunchArgument("checkpoint", "", "planner checkpoint (torch backend)"),
    LaunchArgument("engine_dir", "", "TensorRT engine cache directory"),
    LaunchArgument("mllm_checkpoint", "", "stage-2 checkpoint of the MLLM node"),
    LaunchArgument("use_sim_time", "false", "use /clock (true when replaying a bag)"),
    LaunchArgument("with_mllm", "false", "start the MLLM node (AskScene service)"),
    LaunchArgument("with_evaluator", "false", "start the online evaluator (needs the GT topic of a replay bag)"),
    LaunchArgument("report_path", "", "evaluator JSON report path"),
    LaunchArgument("with_sim", "false", "start the closed-loop simulator (use sim_closed_loop.launch.py)"),
    LaunchArgument("scenarios", "", "simulator: scenario names, comma-separated, or all (default: the YAML's)"),
    LaunchArgument("episodes", "", "simulator: episodes (seeds) per scenario"),
    LaunchArgument("seed", "", "simulator: first seed"),
    LaunchArgument("seconds", "", "simulator: episode length in seconds (float, e.g. 8.0)"),
    LaunchArgument("timing", "", "simulator: lockstep | realtime"),
    LaunchArgument("sim_config", "", "simulator: SimConfig YAML"),
    LaunchArgument("sim_output_dir", "", "simulator: folder of report.json, table.md, episodes/"),
)
REPLAY_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("bag", "", "rosbag2 directory written by `dima bag convert`"),
    LaunchArgument("rate", "1.0", "replay rate"),
)


def node_spec(key: str) -> NodeSpec:
    for spec in NODES:
        if spec.key == key:
            return spec
    raise KeyError(f"no node '{key}' in the DiMA graph (known: {[s.key for s in NODES]})")


def params_path(spec: NodeSpec, config_dir: str | Path | None = None, root: str | Path | None = None) -> Path:
    """The node's parameter file: ``config_dir/<file name>`` when given, else ``root/<params_file>``."""
    if config_dir:
        return Path(config_dir) / Path(spec.params_file).name
    return Path(root or repository_root()) / spec.params_file


def repository_root() -> Path:
    """The source tree (or install prefix share/dima) holding ``config/``: this file's package's parent."""
    return Path(__file__).resolve().parent.parent


def _launch_value(text: str, kind: str | None, argument: str) -> Any:
    """A launch argument's text as the parameter type (ROS parameters are typed: 8 is not a double)."""
    if kind == "list":
        return [item for item in text.replace(",", " ").split() if item]
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(
            f"launch argument {argument}:={text!r} is not a{'n' if kind == 'int' else ''} {kind}"
        ) from None
    return text


def graph_parameter_overrides(spec: NodeSpec, flags: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters a node needs because of the other nodes of the graph (flat names).

    With the simulator (``with_sim``) the planner takes the rig's exact camera extrinsics (its intrinsics come from
    the simulator's CameraInfo): the same calibration the Python closed loop gives the planner.
    """
    if spec.key == "planner" and is_enabled(node_spec("sim"), flags):
        from dima_core.runtime.sim_node_config import planner_calibration_overrides

        return planner_calibration_overrides()
    return {}


def launch_parameter_overrides(spec: NodeSpec, arguments: Mapping[str, str]) -> dict[str, Any]:
    """Node parameter overrides from launch-argument values: the graph's (:func:`graph_parameter_overrides`), then
    the non-empty arguments (empty = keep the YAML's), typed by ``spec.launch_override_types``."""
    out: dict[str, Any] = graph_parameter_overrides(spec, arguments)
    kinds = dict(spec.launch_override_types)
    for parameter, argument in spec.launch_overrides:
        value = arguments.get(argument, "")
        if value:
            out[parameter] = _launch_value(value, kinds.get(parameter), argument)
    return out


def is_enabled(spec: NodeSpec, flags: Mapping[str, Any]) -> bool:
    """Whether a node runs given the flag values (launch strings 'true'/'false' or booleans)."""
    if spec.enabled_by is None:
        return True
    value = flags.get(spec.enabled_by, False)
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes", "on")


__all__ = [
    "EVALUATOR_NAME",
    "LAUNCH_ARGUMENTS",
    "LaunchArgument",
    "MLLM_NAME",
    "NODES",
    "NodeSpec",
    "PACKAGE",
    "PLANNER_NAME",
    "REPLAY_ARGUMENTS",
    "SIM_NAME",
    "graph_parameter_overrides",
    "is_enabled",
    "launch_parameter_overrides",
    "node_spec",
    "params_path",
    "repository_root",
]
