"""Moved: the checkpoint format lives in :mod:`dima_core.io.checkpoint` (atomic writes in :mod:`dima_core.io.atomic`).

Only the error type is still importable from here, for the command-line layer that imports it by this path
(``dima_core/cli.py``, ``dima_core/commands/export.py``, ``dima_core/commands/train.py``); new code imports
``dima_core.io.checkpoint``.
"""

from dima_core.io.checkpoint import CheckpointError

__all__ = ["CheckpointError"]
