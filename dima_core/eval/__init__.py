"""Evaluation: open-loop planning metrics in the VAD/ST-P3 and UniAD conventions (docs/design.md, Evaluation
protocol), the results-file interface, baselines (constant velocity, AD-MLP) and multi-planner scoring.

Modules, one concept each:

- open-loop planning: ``occupancy`` (GT BEV occupancy), ``planning_metrics`` (footprint, per-step scores, both
  conventions, streaming accumulator, table), ``results_file``, ``baselines``, ``evaluate`` (several planners, one
  report);
- a checkpoint's planner: ``planner_inference`` (batched inference over a split, decoded BEAM outputs, latency),
  ``dima_modes`` (the vision / mllm / dual inference modes behind it);
- perception: ``detection_metrics`` (nuScenes mAP / NDS of the agent head), ``map_metrics`` (Chamfer map AP);
- closed loop: ``closed_loop`` (nuPlan / NAVSIM-style episode scores of a :mod:`dima_core.sim` episode);
- ``vqa``: DriveLM-style VQA scoring (``dima eval-vqa``).
"""
