"""Closed-loop simulator on the synthetic world (no ROS): the planner drives, the traffic reacts.

- ``scene``: the dataset's scene generator for one (world config, scenario, seed); ``traffic``: its IDM traffic
  reacting to a planner-driven ego; ``route``: progress and the navigation command.
- ``vehicle`` / ``controller``: kinematic bicycle and the trajectory tracker that executes each plan.
- ``observation``: the planner's inputs, built as the data layer builds a keyframe; ``policies``: the planner and
  the baselines behind one interface; ``episode``: the loop; ``episode_log``: what an episode leaves behind for
  the metrics (``dima_core.eval.closed_loop``), videos and reports.
"""
