"""Replay bags: nuScenes (real or synthetic) -> rosbag2, and the ROS-free helpers every bag consumer shares.

- :mod:`dima_core.bag.topics`: topic names, message types, frames and offered QoS (the one table).
- :mod:`dima_core.bag.typestore`: the ``rosbags`` typestore with the ``dima`` messages parsed from ``msg/*.msg``.
- :mod:`dima_core.bag.messages`: message builders, and :func:`ground_truth_from_message` for evaluators.
- :mod:`dima_core.bag.convert`: :func:`convert_scenes` (``dima bag convert``).
- :mod:`dima_core.bag.reading`: :func:`open_bag` / :func:`bag_info` with clear errors (``dima bag info``, the player).

Nothing here imports rclpy: conversion runs on machines without ROS. The player is ``dima_ros.bag_player``.
"""
