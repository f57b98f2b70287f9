"""Small ROS 2 programs the tests run in separate processes (real rclpy, real DDS), plus shared helpers."""
