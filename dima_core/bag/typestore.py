"""The ``rosbags`` typestore of DiMA bags: ROS 2 Humble's standard messages plus the ``dima`` interfaces.

The ``dima`` types are parsed from the package's own ``msg/*.msg`` files (never re-typed here), so the schemas a
bag embeds are the definitions ``colcon build`` generates the wire types from. Humble's definitions are used for the
standard messages because every type a DiMA bag uses (sensor_msgs, nav_msgs, geometry_msgs, tf2_msgs,
rosgraph_msgs) has the same definition and wire layout from Humble through Kilted, and a Humble-declared schema is
the one every supported distro reads.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

ROS_PACKAGE = "dima"
MSG_DIR_ENV = "DIMA_MSG_DIR"


def find_msg_dir() -> Path:
    """The folder holding the ``dima`` package's ``*.msg`` files.

    Looked up, in order: ``$DIMA_MSG_DIR``; ``msg/`` next to the ``dima_core`` source tree (a checkout or an editable
    install; symlinks resolved, which also covers colcon's ``--symlink-install``); ``share/dima/msg`` under each
    ``$AMENT_PREFIX_PATH`` entry (a colcon or apt install, where rosidl installs the .msg files).
    """
    candidates: list[Path] = []
    if os.environ.get(MSG_DIR_ENV):
        candidates.append(Path(os.environ[MSG_DIR_ENV]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / ROS_PACKAGE / "msg")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.msg")):
            return folder
    raise FileNotFoundError(
        f"cannot find the '{ROS_PACKAGE}' message definitions (looked in {', '.join(map(str, candidates))}); "
        f"set {MSG_DIR_ENV} to the package's msg/ folder"
    )


def dima_message_types(msg_dir: Path | None = None) -> dict[str, tuple]:
    """rosbags field definitions of every ``dima/msg/*`` type, parsed from the .msg files."""
    folder = msg_dir if msg_dir is not None else find_msg_dir()
    types: dict[str, tuple] = {}
    for path in sorted(folder.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{ROS_PACKAGE}/msg/{path.stem}"))
    return types


@cache
def _cached_typestore(msg_dir: str | None) -> Typestore:
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(dima_message_types(Path(msg_dir) if msg_dir else None))
    return store


def dima_typestore(msg_dir: Path | None = None) -> Typestore:
    """ROS 2 Humble typestore with the ``dima`` messages registered (built once per process and folder)."""
    return _cached_typestore(str(msg_dir) if msg_dir is not None else None)


__all__ = ["MSG_DIR_ENV", "dima_message_types", "dima_typestore", "find_msg_dir"]
