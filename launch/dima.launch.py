"""``ros2 launch dima dima.launch.py [backend:=onnxruntime onnx_path:=... with_mllm:=true mllm_checkpoint:=...]``

The planner (and optionally the MLLM node and the online evaluator), one process per node, built from the SAME
definition as the pip-only ``dima ros bringup``: ``dima_ros/launch_spec.py`` (nodes, executables, parameter files,
remappings, enabling arguments). Needs a real ROS 2 install (``launch``, ``launch_ros``); they are imported inside
:func:`generate_launch_description` only, so this file also imports where they are absent (tests parse it).
"""

from __future__ import annotations


def generate_launch_description():  # noqa: ANN201 - launch's own type, imported lazily
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from dima_ros.dds_profile import profile_environment
    from dima_ros.launch_spec import (
        LAUNCH_ARGUMENTS,
        NODES,
        PACKAGE,
        is_enabled,
        launch_parameter_overrides,
        params_path,
    )
    from launch import LaunchDescription

    def nodes(context):  # noqa: ANN001, ANN202 - resolved at launch time, when argument values are known
        values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in LAUNCH_ARGUMENTS}
        config_dir = values["config_dir"] or f"{get_package_share_directory(PACKAGE)}/config"
        use_sim_time = values["use_sim_time"].strip().lower() in ("true", "1", "yes", "on")
        actions = []
        for spec in NODES:
            if not is_enabled(spec, values):
                continue
            actions.append(
                Node(
                    package=PACKAGE,
                    executable=spec.executable,
                    name=spec.name,
                    output="screen",
                    parameters=[
                        str(params_path(spec, config_dir)),
                        launch_parameter_overrides(spec, values),
                        {"use_sim_time": use_sim_time},
                    ],
                    remappings=list(spec.remappings),
                    # Fast DDS segment large enough for six camera JPEGs, unless the user exported a profile.
                    additional_env=profile_environment(config_dir),
                )
            )
        return actions

    return LaunchDescription(
        [
            DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
            for arg in LAUNCH_ARGUMENTS
        ]
        + [OpaqueFunction(function=nodes)]
    )
