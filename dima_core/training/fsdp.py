"""Fully sharded data parallel training (``distributed.strategy: fsdp``) with torch's FSDP2, ``fully_shard``.

Why FSDP2 and not FSDP1 (``FullyShardedDataParallel``), as of torch 2.13:
- stage 2 trains LoRA matrices *inside* frozen LLM decoder layers. FSDP1 flattens each unit into one FlatParameter,
  which needs one ``requires_grad`` for the whole unit (``use_orig_params=True`` lifts that, but the flat gradient is
  still allocated over the frozen part) and one dtype (the base is bf16, peft keeps LoRA in fp32). FSDP2 shards each
  parameter on its own as a DTensor: frozen and trainable, bf16 and fp32 parameters share a unit, frozen ones get
  no gradient memory, and only a unit's *trainable* parameters must share a dtype (checked in :func:`shard_model`
  with a readable error);
- its DTensor state dicts are gathered by ``torch.distributed.checkpoint.state_dict`` into plain full tensors, so a
  FSDP checkpoint has exactly the layout DDP writes (below);
- it runs on CPU with gloo (the 2-process CI test) as well as on CUDA with NCCL.

Units (``fully_shard`` groups), applied bottom-up:
- one per LLM decoder layer. The classes are the ones the transformers language model names in
  ``_no_split_modules`` (its transformer blocks), matched against the modules actually inside it, so any LLM the
  MLLM config loads (Vicuna-7B, SmolLM2, ...) is wrapped without a class named here. The layers hold ~97 % of a
  7B model; they are all-gathered in ``fsdp.param_dtype`` and their (LoRA) gradients reduce-scattered in
  ``fsdp.reduce_dtype``.
- the root: everything else (planner, Q-former adapters, heads, the LLM's embeddings, final norm and LM head), in
  its parameters' own dtypes and computed under the trainer's autocast, exactly as under DDP. FSDP mixed precision
  is deliberately not applied there: it would cast every floating input of the unit to bf16, camera intrinsics and
  extrinsics included, whose BEV projection needs fp32.

The root is gathered for the whole training step (:func:`gather_root`): stages call parts of the model outside its
``forward`` (stage 2 encodes the previous and the future frames' BEV with the planner's encoder before the joint
forward; the teacher embeds its prompt with the LLM's input embedding before calling the LLM), and FSDP only
gathers a unit around calls of that unit's own ``forward``. Backward re-shards it. For the 7B configuration the
root is about 1.4 GB (fp32 planner, adapters and heads, bf16 embeddings and LM head); the 13 GB of decoder layers
are what FSDP shards.

Activation checkpointing stays the model's own (transformers' non-reentrant gradient checkpointing): when a
checkpointed layer is recomputed in backward, FSDP2's pre-backward hook has already gathered it.

Checkpoints: :func:`gather_full_state` returns, on rank 0, the model's ``state_dict()`` with every DTensor gathered
into a full CPU tensor (the model decides the keys: DimaJointModel leaves the frozen LLM base out) and the
optimiser state in ``torch.optim.Optimizer.state_dict()``'s own layout (integer parameter indices, converted from
torch.distributed.checkpoint's name-keyed layout). So ``load_dima`` reads a FSDP checkpoint unchanged, and a run
can resume a DDP checkpoint under FSDP or the other way round (:func:`load_full_model_state` and
:func:`load_full_optimizer_state` shard a full state back).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy, fully_shard
from torch.distributed.tensor import DTensor

from dima_core.training.config import FSDPConfig
from dima_core.training.distributed import DistContext

log = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ShardedModel:
    """What :func:`shard_model` did: the mesh, the decoder-layer units and this rank's shard coordinate.

    ``shard_index``: position of this rank along the sharded mesh dimension. Under hybrid sharding the ranks with
    the same index hold the same shards (replicas); under full sharding every rank's index is its own.
    """

    mesh: DeviceMesh
    layer_classes: tuple[str, ...]
    num_layer_units: int
    shard_index: int


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor; any other tensor unchanged."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor gathered to a plain tensor on every rank (collective); any other tensor unchanged."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


# ------------------------------------------------------------------------------------------------------- wrapping
def build_mesh(ctx: DistContext, cfg: FSDPConfig) -> DeviceMesh:
    """1-D mesh over all ranks (full, grad_op), or 2-D (replicate, shard) for hybrid sharding."""
    world = ctx.world_size
    if cfg.sharding == "hybrid":
        shard = cfg.hybrid_shard_size
        if shard is None:
            # torchrun's ranks per node: all-gathers and reduce-scatters then stay on the node's fast links.
            shard = int(os.environ.get("LOCAL_WORLD_SIZE", "") or world)
        if shard > world or world % shard:
            raise ValueError(
                f"distributed.fsdp.hybrid_shard_size {shard} must divide the world size {world} (ranks per shard "
                "group; by default the GPUs of one node)"
            )
        if shard < world:
            return init_device_mesh(ctx.device.type, (world // shard, shard), mesh_dim_names=("replicate", "shard"))
        log.info("FSDP hybrid sharding with one shard group of all %d ranks is full sharding", world)
    return init_device_mesh(ctx.device.type, (world,), mesh_dim_names=("shard",))


def _inside(name: str, outer: str) -> bool:
    """Whether the module named ``name`` lies strictly inside the one named ``outer`` ("" is the root)."""
    return outer == "" or name.startswith(f"{outer}.")


def language_models(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the transformers language models in ``model``: models that can generate text.

    Other transformers models (stage 2's BLIP-2 Q-former adapters) list their own blocks in ``_no_split_modules``
    too, but they are small, trainable and fp32: they stay in the root unit, outside the LLM's mixed precision.
    """
    from transformers import PreTrainedModel

    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, PreTrainedModel) and module.can_generate():
            if not any(_inside(name, outer) for outer, _ in found):  # the outermost (LlamaForCausalLM)
                found.append((name, module))
    return found


def decoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every decoder layer of the language models in ``model``, in registration order.

    A language model names its transformer blocks in ``_no_split_modules`` (the modules transformers keeps whole on
    one device); the blocks are the modules *inside that model* whose class has one of those names, so no class is
    ever looked up by its name and no other model's blocks are taken.
    """
    return [layer for lm_name, lm in language_models(model) for layer in _layers_of(lm_name, lm)]


def _layers_of(lm_name: str, lm: nn.Module) -> list[tuple[str, nn.Module]]:
    names = set(getattr(lm, "_no_split_modules", None) or ())
    layers: list[tuple[str, nn.Module]] = []
    for name, module in lm.named_modules():
        full = f"{lm_name}.{name}" if lm_name and name else (lm_name or name)
        if type(module).__name__ in names and not any(_inside(full, outer) for outer, _ in layers):
            layers.append((full, module))
    return layers


def check_trainable_dtypes(model: nn.Module, layers: list[tuple[str, nn.Module]]) -> None:
    """Raise ValueError when a unit's trainable parameters do not share one dtype.

    FSDP2 reduce-scatters a unit's gradients in one collective of one dtype; it would otherwise fail with an
    assertion at the first forward, without saying which parameters disagree.
    """
    claimed: set[int] = set()
    units = [*layers, ("<root>", model)]  # the order fully_shard assigns parameters to units in
    for unit_name, unit in units:
        dtypes: dict[torch.dtype, str] = {}
        for name, param in unit.named_parameters():
            if id(param) in claimed:
                continue
            claimed.add(id(param))
            if param.requires_grad:
                dtypes.setdefault(param.dtype, name)
        if len(dtypes) > 1:
            examples = ", ".join(f"{name} ({dtype})" for dtype, name in dtypes.items())
            raise ValueError(
                f"FSDP unit {unit_name} has trainable parameters of several dtypes: {examples}. FSDP reduces a "
                "unit's gradients in one dtype: keep the trainable parameters in one dtype (master weights in fp32, "
                "computation in bf16 through precision / distributed.fsdp.param_dtype)"
            )


def shard_model(model: nn.Module, ctx: DistContext, cfg: FSDPConfig, reduce_unused: bool) -> ShardedModel:
    """Apply ``fully_shard`` to ``model`` in place (decoder layers, then the root; module docstring).

    The model may still be on the CPU: each ``fully_shard`` moves its unit to the mesh's device and keeps only the
    local shard there, so a 7B model is never whole on one GPU. ``reduce_unused`` makes every unit reduce-scatter
    zeros for trainable parameters that got no gradient on this rank (DDP's find_unused_parameters): otherwise ranks
    whose steps used different parameters (stage 2's scene edits) would issue mismatched collectives.
    """
    if not torch.distributed.is_initialized():
        raise ValueError(
            "distributed.strategy 'fsdp' needs a process group, also for one process: build the context with "
            "init_distributed(device, distributed=config.distributed) (dima train does)"
        )
    mesh = build_mesh(ctx, cfg)
    offload: OffloadPolicy = OffloadPolicy()
    if cfg.cpu_offload:
        if ctx.device.type == "cuda":
            offload = CPUOffloadPolicy(pin_memory=True)
        else:
            log.warning("distributed.fsdp.cpu_offload ignored: the model trains on the CPU already")
    # grad_op keeps every unit gathered from its forward to its backward (ZeRO-2); full re-shards (ZeRO-3).
    reshard = cfg.sharding != "grad_op"
    param_dtype, reduce_dtype = cfg.param_dtype, cfg.reduce_dtype
    if ctx.device.type != "cuda" and (param_dtype, reduce_dtype) != ("fp32", "fp32"):
        # The trainer's precision policy (precision.py): mixed precision is a GPU feature. On a CPU, bf16 layers run
        # about ten times slower than fp32 ones (measured: a SmolLM2 stage-2 step took 60 s instead of 6 s).
        log.warning(
            "distributed.fsdp param_dtype %s / reduce_dtype %s requested but training runs on %s: mixed "
            "precision is GPU-only, the LLM layers compute and reduce in fp32",
            param_dtype,
            reduce_dtype,
            ctx.device,
        )
        param_dtype = reduce_dtype = "fp32"
    # Per language model: its layers, and the dtype its hidden states travel in between them (its embeddings'):
    # each unit returns that dtype whatever it computed in, as the unwrapped layer would, because the final norm and
    # the LM head (in the root unit, stored in the LLM's dtype) read the last layer's output.
    units: list[tuple[str, nn.Module, torch.dtype]] = []
    if cfg.wrap_llm_layers:
        for lm_name, lm in language_models(model):
            hidden_dtype = lm.get_input_embeddings().weight.dtype
            units.extend((name, layer, hidden_dtype) for name, layer in _layers_of(lm_name, lm))
    layers = [(name, layer) for name, layer, _ in units]
    classes = tuple(sorted({type(layer).__name__ for _, layer in layers}))  # before fully_shard renames them
    check_trainable_dtypes(model, layers)
    for _, layer, hidden_dtype in units:
        mp = MixedPrecisionPolicy(
            param_dtype=DTYPES[param_dtype], reduce_dtype=DTYPES[reduce_dtype], output_dtype=hidden_dtype
        )
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard, mp_policy=mp, offload_policy=offload)
    # The root keeps its own dtypes (no mixed-precision policy, module docstring) and stays gathered from its
    # forward into the backward (FSDP's own default for a root: the backward starts with it); gather_root holds it
    # for the whole step anyway.
    fully_shard(model, mesh=mesh, reshard_after_forward=False, offload_policy=offload)
    assert isinstance(model, FSDPModule)
    model.set_reduce_scatter_unused_params(reduce_unused)
    coordinate = mesh.get_coordinate() or [0]
    result = ShardedModel(mesh=mesh, layer_classes=classes, num_layer_units=len(layers), shard_index=coordinate[-1])
    total = sum(p.numel() for p in model.parameters())
    in_layers = sum(p.numel() for _, layer in layers for p in layer.parameters())
    log.info(
        "FSDP: %s sharding over mesh %s; %d decoder-layer units (%s, %.1f %% of %.2f M parameters) + the root; "
        "layers gathered in %s, gradients reduced in %s; cpu offload %s",
        cfg.sharding,
        tuple(mesh.shape),
        len(layers),
        ", ".join(classes) or "none found",
        100.0 * in_layers / max(total, 1),
        total / 1e6,
        param_dtype,
        reduce_dtype,
        isinstance(offload, CPUOffloadPolicy),
    )
    if cfg.wrap_llm_layers and not layers:
        log.warning(
            "FSDP: the model holds no transformers decoder layer: the root unit is the only one (it is "
            "gathered for the whole step, so only gradients and optimiser state are sharded)"
        )
    return result


# ------------------------------------------------------------------------------------------------------- gathering
def gather_root(model: nn.Module) -> None:
    """All-gather the root unit (planner, adapters, heads, embeddings) so that any of its modules can be called,
    also outside ``model.forward`` (module docstring). The backward, or :func:`reshard_all`, re-shards it."""
    if not isinstance(model, FSDPModule):
        raise TypeError("gather_root needs a model wrapped by fully_shard")
    model.unshard()


def reshard_all(model: nn.Module) -> None:
    """Free every gathered unit (after evaluation: no backward re-shards them, and grad_op units stay gathered)."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


@contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """The root gathered inside the block and every unit re-sharded after it (evaluation, no backward)."""
    gather_root(model)
    try:
        yield
    finally:
        reshard_all(model)


def drop_unused_gradients(params: list[nn.Parameter]) -> int:
    """Set to None the gradients that are zero on every rank; returns how many (collective: every rank calls it).

    With ``find_unused_parameters`` FSDP reduce-scatters zeros for parameters a rank did not use, so after the
    backward *every* trainable parameter has a gradient, even one no rank used (stage 2's edit encoder in a step
    without added agents, a head whose task is switched off). AdamW would then decay it and keep moving it by its
    momentum, where DDP leaves a parameter that no rank used without a gradient and AdamW skips it. Dropping the
    all-zero gradients restores DDP's behaviour (the one difference: a parameter used everywhere whose gradient is
    exactly zero is skipped too, where DDP would still apply weight decay to it).
    """
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return 0
    device = local_tensor(with_grad[0].grad).device
    nonzero = torch.stack([local_tensor(p.grad).ne(0).any() for p in with_grad]).to(device=device, dtype=torch.uint8)
    if torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(nonzero, op=torch.distributed.ReduceOp.MAX)
    dropped = 0
    for param, used in zip(with_grad, nonzero.tolist(), strict=True):
        if not used:
            param.grad = None
            dropped += 1
    return dropped


def clip_grad_norm(params: list[nn.Parameter], max_norm: float, mesh: DeviceMesh) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for FSDP-sharded parameters: the global L2 norm of all gradients
    (returned, fp32), and every gradient scaled by ``min(1, max_norm / (norm + 1e-6))``. Collective.

    torch's own clip_grad_norm_ gives the same result on DTensor gradients, but through DTensor's per-op sharding
    propagation: for each new list of gradients (a new set of unused parameters) it re-derives the sharding of
    every element, which took ~10 s per new list for the 450 parameters of the stage-2 test model on a CPU.
    Here, as in FSDP1, each rank reduces its own shards to one number: the local shards of one shard group
    partition every parameter, so summing the squared local norms over that group gives the squared global norm
    (under hybrid sharding the other groups hold the same shards and compute the same value).
    """
    grads = [local_tensor(p.grad.detach()) for p in params if p.grad is not None]
    device = grads[0].device if grads else torch.device(mesh.device_type)
    local = torch.zeros((), dtype=torch.float32, device=device)
    for grad in grads:
        local += torch.linalg.vector_norm(grad, dtype=torch.float32).square()
    group = mesh.get_group("shard") if mesh.ndim > 1 else mesh.get_group()
    torch.distributed.all_reduce(local, group=group)
    total = local.sqrt()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)  # torch's formula; nan/inf propagate as there
    for grad in grads:
        grad.mul_(coef.to(dtype=grad.dtype))  # to_local() aliases the DTensor's storage: clips in place
    return total


# ------------------------------------------------------------------------------------------------------- state
def optimizer_state_by_index(state: Mapping[str, Any]) -> dict[str, Any]:
    """torch.distributed.checkpoint's optimiser state (keyed by parameter names) in ``Optimizer.state_dict()``'s
    layout (parameters numbered across the param groups in order), the layout DDP checkpoints hold."""
    index: dict[str, int] = {}
    groups = []
    for group in state["param_groups"]:
        ids = []
        for name in group["params"]:
            index.setdefault(name, len(index))
            ids.append(index[name])
        groups.append({**group, "params": ids})
    unknown = sorted(set(state["state"]) - set(index))
    if unknown:
        raise ValueError(f"optimiser state for parameters in no param group: {unknown[:5]}")
    return {"state": {index[name]: value for name, value in state["state"].items()}, "param_groups": groups}


def optimizer_state_by_name(
    state: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """The inverse of :func:`optimizer_state_by_index` for ``optimizer``'s parameters (named by ``model``)."""
    names = {id(p): name for name, p in model.named_parameters()}
    try:
        order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    except KeyError as exc:
        raise ValueError("the optimiser holds a parameter that is not the model's") from exc
    if len(state["param_groups"]) != len(optimizer.param_groups):
        raise ValueError(
            f"{len(state['param_groups'])} param groups in the checkpoint, "
            f"{len(optimizer.param_groups)} in this optimiser"
        )
    groups = []
    for saved, current in zip(state["param_groups"], optimizer.param_groups, strict=True):
        if len(saved["params"]) != len(current["params"]):
            raise ValueError(
                f"a param group has {len(saved['params'])} parameters in the checkpoint and "
                f"{len(current['params'])} in this optimiser"
            )
        groups.append({**saved, "params": [order[i] for i in saved["params"]]})
    return {"state": {order[int(i)]: value for i, value in state["state"].items()}, "param_groups": groups}


def gather_full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model state, optimiser state)`` as full CPU tensors on rank 0, empty dicts on the other ranks.

    Collective: every rank must call it. The model state has the keys of ``model.state_dict()`` (the model's own
    choice of what to store), the optimiser state the layout of ``Optimizer.state_dict()``.
    """
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered one tensor at a time to rank 0
    model_state, optim_state = get_state_dict(model, optimizer, options=options)
    if not model_state:
        return {}, {}
    return dict(model_state), optimizer_state_by_index(optim_state)


def load_full_model_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Shard full (unsharded) weights into a FSDP model (collective).

    Every rank passes the same full state (each reads the checkpoint) and keeps its own shards. Weights the state
    lacks keep their current values (DimaJointModel's frozen LLM base; the caller checks the keys beforehand with
    :func:`~dima_core.io.checkpoint.check_model_state`); unknown keys raise.
    """
    # set_model_state_dict edits the mapping it gets: hand it a copy.
    set_model_state_dict(model, dict(state), options=StateDictOptions(full_state_dict=True))


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Shard a full ``Optimizer.state_dict()`` (the DDP layout) into the optimiser of a FSDP model (collective)."""
    by_name = optimizer_state_by_name(state, model, optimizer)
    # strict=False: a parameter that never had a gradient has no AdamW state (as in Optimizer.load_state_dict,
    # which accepts that); the param groups were matched against this optimiser above.
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True, strict=False))
    # To load, torch.distributed.checkpoint first creates state for *every* parameter with a zero-gradient step
    # (AdamW step count 1, zero moments); parameters without saved state must lose it again, or their first real
    # step would be bias-corrected as a second one and the resumed run would differ from the uninterrupted one.
    saved = set(by_name["state"])
    for name, param in model.named_parameters():
        if name not in saved:
            optimizer.state.pop(param, None)


__all__ = [
    "DTYPES",
    "ShardedModel",
    "build_mesh",
    "check_trainable_dtypes",
    "clip_grad_norm",
    "decoder_layers",
    "drop_unused_gradients",
    "full_value",
    "gather_full_state",
    "gather_root",
    "gathered",
    "language_models",
    "load_full_model_state",
    "load_full_optimizer_state",
    "local_tensor",
    "optimizer_state_by_index",
    "optimizer_state_by_name",
    "reshard_all",
    "shard_model",
]
