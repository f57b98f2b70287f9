"""``ros2 launch dima replay_nuscenes.launch.py bag:=bags/synth onnx_path:=planner.onnx [rate:=1.0]``

Replays a ``dima bag convert`` bag with ``ros2 bag play --clock`` into the nodes of ``dima.launch.py`` with
``use_sim_time`` and the online evaluator on: the real-install counterpart of
``dima ros bringup --bag BAG``. Nodes, parameter files and remappings come from ``dima_ros/launch_spec.py``
(shared with ``dima ros bringup``). ``launch`` / ``launch_ros`` are imported inside
:func:`generate_launch_description` only.
"""

from __future__ import annotations


def generate_launch_description():  # noqa: ANN201 - launch's own type, imported lazily
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, SetEnvironmentVariable
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration

    from dima_ros.dds_profile import profile_environment
    from dima_ros.launch_spec import LAUNCH_ARGUMENTS, PACKAGE, REPLAY_ARGUMENTS
    from launch import LaunchDescription

    share = get_package_share_directory(PACKAGE)
    forwarded = {arg.name: LaunchConfiguration(arg.name) for arg in LAUNCH_ARGUMENTS}
    # A replay always runs on the bag's clock and is always scored.
    forwarded["use_sim_time"] = "true"
    forwarded["with_evaluator"] = "true"
    return LaunchDescription(
        [
            DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
            for arg in (*LAUNCH_ARGUMENTS, *REPLAY_ARGUMENTS)
            if arg.name not in ("use_sim_time", "with_evaluator")
        ]
        # The player writes full-size camera frames: it needs the large Fast DDS segment too (unless user-chosen).
        + [
            SetEnvironmentVariable(name, value)
            for name, value in profile_environment(os.path.join(share, "config")).items()
        ]
        + [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(share, "launch", "dima.launch.py")),
                launch_arguments=list(forwarded.items()),
            ),
            ExecuteProcess(
                cmd=[
                    "ros2",
                    "bag",
                    "play",
                    LaunchConfiguration("bag"),
                    "--clock",
                    "--rate",
                    LaunchConfiguration("rate"),
                ],
                output="screen",
            ),
        ]
    )
