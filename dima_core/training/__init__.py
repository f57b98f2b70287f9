"""Training: the generic data-parallel trainer and the stages built on it (stage 1: the vision planner alone;
stage 2: the planner and its MLLM teacher jointly).

Modules, one concept each: ``config`` (TrainConfig), ``schedule`` (warm-up + cosine lr), ``distributed`` (torchrun /
DDP setup and collectives), ``fsdp`` (FSDP2 sharding),
``sampler`` (resumable distributed sampler), ``determinism`` (seeds and RNG state), ``precision`` (mixed-precision
policy), ``profiling`` (per-section step timing), ``trainer`` (the loop), ``stage1`` (VisionPlanner + PlannerLoss on
the driving data), ``stage2`` (DimaJointModel: planner + teacher losses), ``gradient_projection`` (stage 2's
optional projection between conflicting loss terms, Drive-KD). Entry point: ``dima train``
(dima_core/commands/train.py). The checkpoint format and batch helpers the trainer shares with the model loader,
export and evaluation are in :mod:`dima_core.io`.

Heavy imports stay in the submodules, so ``import dima_core.training`` is cheap; import what you use, e.g.
``from dima_core.training.trainer import Trainer``.
"""
