"""Message <-> array converters of the DiMA nodes: pure functions over ROS message objects, no node, no DDS.

One module per concept, so a node only subscribes, publishes, threads and reports while the conversions it relies on
are unit-tested on their own (test/test_converters_*.py):

- :mod:`.stamps`: ``builtin_interfaces`` Time / Duration <-> integer nanoseconds.
- :mod:`.inputs`: camera images and calibration, odometry, acceleration, driving command -> the runtime's arrays.
- :mod:`.beam_tokens`: the planner's BEAM scene tokens <-> ``dima/msg/BeamTokens``.
- :mod:`.trajectory`: planned positions <-> ``dima/msg/Trajectory`` (and the ``nav_msgs/Path`` for RViz).
- :mod:`.markers`: RViz ``MarkerArray`` builders (the planner's perception, the simulator's scene).
- :mod:`.qos`: a rosbag2 recorded QoS profile -> the rclpy ``QoSProfile`` a replay offers.
"""
