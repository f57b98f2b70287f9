"""Neutral I/O shared by training, models, export and eval; it imports none of them, so none imports the other.

Modules, one concept each: ``atomic`` (crash-safe file writes: a file is either the old one or complete),
``checkpoint`` (the training checkpoint format: its keys, atomic saves, validated loads, the ``latest`` pointer of a
run directory), ``batch`` (nested batches of tensors: onto a device, their size).

Import what you use, e.g. ``from dima_core.io.checkpoint import load_checkpoint``; this package imports nothing
itself, so ``dima_core.io.atomic`` stays free of torch.
"""
