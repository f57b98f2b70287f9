"""``ros2 launch dima sim_closed_loop.launch.py onnx_path:=/abs/planner.onnx [scenarios:=cruise,follow] [episodes:=2]``

The closed loop on a real ROS 2 install: the simulator node (``lib/dima/sim_node``) publishes the six cameras,
CameraInfo, ``/odom``, ``/accel``, the route command, ``/tf``, ``/tf_static`` and ``/clock``; the planner node drives
it with its trajectories; ``with_mllm:=true mllm_checkpoint:=/abs/stage2`` adds the MLLM node. Every node runs on
the simulator's clock (``use_sim_time``), the evaluator stays off (the simulator scores its own episodes), and the
launch ends when the simulator has scored its last episode (report in ``sim_output_dir``, metrics on
``/dima_sim/output/episode_metrics``).

More arguments: ``seed:=100 seconds:=8.0 timing:=realtime sim_config:=/abs/sim.yaml sim_output_dir:=/abs/out
backend:=tensorrt`` (``ros2 launch dima sim_closed_loop.launch.py --show-args`` lists them all). The pip-only
counterpart is ``dima ros bringup --sim ...``.

This file includes ``dima.launch.py`` with ``with_sim:=true``: nodes, executables, parameter files, remappings and
the planner's simulator calibration all come from ``dima_ros/launch_spec.py``, shared with ``dima ros bringup``.
``launch`` / ``launch_ros`` are imported inside :func:`generate_launch_description` only.
"""

from __future__ import annotations


def generate_launch_description():  # noqa: ANN201 - launch's own type, imported lazily
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, EmitEvent, IncludeLaunchDescription, LogInfo, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration

    from dima_ros.launch_spec import LAUNCH_ARGUMENTS, NODES, PACKAGE
    from launch import LaunchDescription

    share = get_package_share_directory(PACKAGE)
    fixed = {"use_sim_time": "true", "with_sim": "true", "with_evaluator": "false", "report_path": ""}
    forwarded = {arg.name: LaunchConfiguration(arg.name) for arg in LAUNCH_ARGUMENTS if arg.name not in fixed}
    forwarded.update(fixed)
    ending = {f"/{spec.executable}" for spec in NODES if spec.ends_launch}

    def on_exit(event, context):  # noqa: ANN001, ANN202 - launch's callback signature
        # The simulator exits after its last episode (shutdown_when_done): end the planner and the rest with it.
        if any(str(part).endswith(tuple(ending)) for part in event.cmd):
            return [
                LogInfo(msg=f"closed-loop simulation finished (exit {event.returncode})"),
                EmitEvent(event=Shutdown(reason="closed-loop simulation finished")),
            ]
        return None

    return LaunchDescription(
        [
            DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
            for arg in LAUNCH_ARGUMENTS
            if arg.name not in fixed
        ]
        + [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(share, "launch", "dima.launch.py")),
                launch_arguments=list(forwarded.items()),
            ),
            RegisterEventHandler(OnProcessExit(on_exit=on_exit)),
        ]
    )
