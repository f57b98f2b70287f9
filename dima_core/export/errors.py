"""Errors of the export and runtime layer that callers (CLI, ROS node) tell apart."""

from __future__ import annotations


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (package or GPU missing). Never answered by a silent fallback."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX model or build an engine from it (message says why and what to try)."""


__all__ = ["BackendUnavailableError", "EngineBuildError"]
