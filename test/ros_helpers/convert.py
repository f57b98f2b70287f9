"""Turn ROS 2 messages into plain JSON-able Python values (and back for comparison), without rosidl_runtime_py."""

from __future__ import annotations

import array
import importlib
from typing import Any


def msg_to_dict(value: Any) -> Any:
    """Recursively convert a ROS message (or field value) to dicts/lists/scalars. Field order is kept."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: msg_to_dict(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if isinstance(value, array.array):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return list(value)
    if isinstance(value, (list, tuple)):
        return [msg_to_dict(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays / scalars (fixed-size array fields)
        return value.tolist()
    return value


def import_type(dotted: str):
    """``"dima.msg.Trajectory"`` -> the class."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)
