"""Evaluation: open-loop planning metrics in the VAD/ST-P3 and UniAD conventions (docs/design.md, Evaluation
protocol), the results-file interface, baselines (constant velocity, AD-MLP) and multi-planner scoring.

Modules: ``occupancy`` (GT BEV occupancy), ``planning_metrics`` (footprint, per-step scores, both conventions,
streaming accumulator, table), ``results_file``, ``baselines``, ``evaluate`` (several planners, one report).
"""
