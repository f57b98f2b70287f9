"""``dima`` commands that need ROS (``dima ros ...``, ``dima bag play``), registered lazily by dima_core/cli.py.

Importing these modules does not import rclpy (it is imported when a command runs), but they live here because their
handlers use ``dima_ros``, which dima_core never imports.
"""
