"""The one error type of the planner node's input path (ROS-free)."""

from __future__ import annotations


class InputError(ValueError):
    """An input that cannot be used; ``kind`` groups it for diagnostics (decode, encoding, calibration, odometry,
    command, interface)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


__all__ = ["InputError"]
