"""Training: the generic data-parallel trainer and the stages built on it (stage 1: the vision planner alone).

Modules, one concept each: ``config`` (TrainConfig), ``schedule`` (warm-up + cosine lr), ``checkpoint`` (atomic,
validated checkpoints), ``distributed`` (torchrun / DDP setup and collectives), ``sampler`` (resumable distributed
sampler), ``determinism`` (seeds and RNG state), ``precision`` (mixed-precision policy), ``trainer`` (the loop),
``stage1`` (VisionPlanner + PlannerLoss on the driving data). Entry point: ``dima train`` (dima_core/commands/train.py).

Heavy imports stay in the submodules, so ``import dima_core.training`` is cheap; import what you use, e.g.
``from dima_core.training.trainer import Trainer``.
"""
