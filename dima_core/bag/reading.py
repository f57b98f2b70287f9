"""Open a rosbag2 (MCAP or SQLite3) with ``rosbags`` and describe it, with errors a user can act on (no rclpy).

Used by ``dima bag info`` and by the pip-only player (dima_ros.bag_player), so both reject a missing, partial or
corrupt bag with the same message instead of a library traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos
from rosbags.typesys.store import Typestore

from dima_core.bag.typestore import dima_typestore


class BagError(ValueError):
    """A bag that cannot be opened or read (missing, not a rosbag2, corrupt). A ValueError so the CLI reports it."""


def resolve_bag_path(path: str | Path) -> Path:
    """The rosbag2 directory for ``path``: the directory itself, or the parent of a storage file given by mistake.

    Raises:
        BagError: nothing there, or no ``metadata.yaml`` (e.g. a bare .mcap or a half-written bag).
    """
    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {p} does not exist")
    if p.is_file() and p.suffix in (".mcap", ".db3") and (p.parent / "metadata.yaml").is_file():
        return p.parent
    if not p.is_dir():
        raise BagError(f"{p} is not a rosbag2 directory (expected a folder with metadata.yaml and a .mcap/.db3 file)")
    if not (p / "metadata.yaml").is_file():
        raise BagError(f"{p} has no metadata.yaml: not a rosbag2 bag, or its writer did not finish")
    return p


def open_bag(path: str | Path, typestore: Typestore | None = None) -> AnyReader:
    """An *opened* ``AnyReader`` on the bag; the caller closes it (``reader.close()``).

    ``typestore`` defaults to the DiMA typestore (standard Humble types + dima messages); types the bag declares
    itself (its embedded ros2msg schemas) are registered from the bag by AnyReader.

    Raises:
        BagError: missing / not a rosbag2 / unreadable metadata or storage file.
    """
    bag_dir = resolve_bag_path(path)
    reader = AnyReader([bag_dir], default_typestore=typestore if typestore is not None else dima_typestore())
    try:
        reader.open()
    except Exception as exc:  # rosbags raises its own error types, yaml and storage-plugin errors for bad input
        raise BagError(f"cannot open bag {bag_dir}: {type(exc).__name__}: {exc}") from exc
    return reader


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag as ``dima bag info`` shows it."""

    name: str
    msgtype: str
    count: int
    offered_qos: tuple[Qos, ...]


@dataclass(frozen=True)
class BagInfo:
    """Summary of a bag: storage, time span (ns, as recorded) and its topics."""

    path: Path
    storage: str
    start_ns: int
    end_ns: int
    message_count: int
    topics: tuple[TopicInfo, ...]

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) * 1e-9

    def format(self) -> str:
        """Human-readable summary, one line per topic (``ros2 bag info`` layout)."""
        lines = [
            f"bag:       {self.path}",
            f"storage:   {self.storage}",
            f"duration:  {self.duration_s:.3f} s  ({self.start_ns} .. {self.end_ns} ns)",
            f"messages:  {self.message_count}",
            "topics:",
        ]
        width = max((len(t.name) for t in self.topics), default=0)
        for t in self.topics:
            qos = (
                ", ".join(
                    f"{q.reliability.name.lower()}/{q.durability.name.lower()}/depth {q.depth}" for q in t.offered_qos
                )
                or "no offered QoS recorded"
            )
            lines.append(f"  {t.name:<{width}}  {t.msgtype:<45} {t.count:>6}  [{qos}]")
        return "\n".join(lines)


def bag_info(path: str | Path) -> BagInfo:
    """Read a bag's metadata (not its messages) into :class:`BagInfo`."""
    bag_dir = resolve_bag_path(path)
    storage = "unknown"
    files = sorted(p.suffix for p in bag_dir.iterdir() if p.suffix in (".mcap", ".db3"))
    if files:
        storage = {".mcap": "mcap", ".db3": "sqlite3"}[files[0]]
    reader = open_bag(bag_dir)
    try:
        topics = []
        for conn in sorted(reader.connections, key=lambda c: c.topic):
            qos = tuple(getattr(conn.ext, "offered_qos_profiles", ()) or ())
            topics.append(TopicInfo(conn.topic, conn.msgtype, int(conn.msgcount), qos))
        return BagInfo(
            path=bag_dir,
            storage=storage,
            start_ns=int(reader.start_time),
            # rosbags' end_time is exclusive (last stamp + 1 ns); report the last message's stamp.
            end_ns=int(reader.end_time) - 1 if reader.message_count else int(reader.start_time),
            message_count=int(reader.message_count),
            topics=tuple(topics),
        )
    finally:
        reader.close()


__all__ = ["BagError", "BagInfo", "TopicInfo", "bag_info", "open_bag", "resolve_bag_path"]
