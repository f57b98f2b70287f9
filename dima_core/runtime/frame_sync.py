"""Frame-set synchronisation for the planner node, anchored on CAM_FRONT (as Autoware's VAD node), pure Python.

Every input is stamped (``header.stamp`` in integer nanoseconds) and queued in a bounded deque. A CAM_FRONT frame
opens a *pending* frame set; the set is complete when each other camera has a frame within ``tolerance_ns`` of the
anchor stamp, odometry (and acceleration when used) lies within ``odometry_max_age_ns`` of it, and a driving command
is available under the command policy. A pending set that cannot complete ends as :class:`SyncIssue` with one reason
per missing input when a newer CAM_FRONT frame arrives (every input of the older one has then had its chance: the
cameras of a rig are triggered together) or when it waited ``max_wait_ns`` of wall time (:meth:`poll`), so a dead
camera is reported instead of stalling the synchroniser silently (ros_ecosystem.md section 6 item 6).

A stamp older than (or equal to) the previous stamp of the same input is rejected with a ``backwards`` issue: it is
either a duplicate or a clock problem, and pairing it would build a frame set across time. A CAM_FRONT stamp far
behind the previous one (``reset_on_jump_back_ns``: a bag restarted, a simulator reset) clears all state instead.

Nothing here knows ROS: values are opaque payloads (the node stores its messages), stamps and wall times are ints.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Optional, Sequence, TypeVar, Union

from dima_core.constants import CAMERA_NAMES

T = TypeVar("T")
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Stamped(Generic[T]):
    """A payload with its header stamp (ns)."""

    stamp_ns: int
    value: T


@dataclass
class FrameSet:
    """A complete, synchronised set of inputs for one planner step; ``stamp_ns`` is the CAM_FRONT stamp."""

    stamp_ns: int
    images: dict[str, Stamped[Any]]  # camera name -> frame, in the camera order given to the synchroniser
    odometry: Stamped[Any]
    acceleration: Optional[Stamped[Any]]
    command: Stamped[Any]


IssueKind = Literal["incomplete", "backwards", "reset", "overflow"]


@dataclass
class SyncIssue:
    """Why no frame set was produced for ``stamp_ns``; ``reasons`` are human-readable, one per problem."""

    kind: IssueKind
    stamp_ns: int
    reasons: tuple[str, ...]


SyncEvent = Union[FrameSet, SyncIssue]


@dataclass
class SyncStats:
    """Counters for diagnostics."""

    complete: int = 0
    incomplete: int = 0
    backwards: int = 0
    resets: int = 0
    last_reasons: tuple[str, ...] = ()


@dataclass
class _Pending:
    anchor: Stamped[Any]
    arrived_ns: int  # wall (monotonic) time the anchor arrived


def _ms(ns: int) -> float:
    return ns / NS_PER_MS


@dataclass
class SyncSettings:
    """Tunable settings (the node maps its ``sync.*`` and ``inputs.*`` parameters onto these)."""

    tolerance_ns: int = 60 * NS_PER_MS
    max_wait_ns: int = 300 * NS_PER_MS
    odometry_max_age_ns: int = 150 * NS_PER_MS
    command_policy: Literal["match", "latest"] = "match"
    command_max_age_ns: int = 5000 * NS_PER_MS
    reset_on_jump_back_ns: int = 2000 * NS_PER_MS  # 0 disables
    use_acceleration: bool = True
    camera_queue_size: int = 4
    odometry_queue_size: int = 50
    cameras: tuple[str, ...] = field(default_factory=lambda: tuple(CAMERA_NAMES))
    anchor: str = "CAM_FRONT"


class FrameSynchronizer:
    """CAM_FRONT-anchored synchroniser with bounded queues; every ``add_*`` returns the events it caused."""

    def __init__(self, settings: Optional[SyncSettings] = None) -> None:
        self.settings = settings or SyncSettings()
        if self.settings.anchor not in self.settings.cameras:
            raise ValueError(f"anchor camera {self.settings.anchor} is not one of {self.settings.cameras}")
        self.stats = SyncStats()
        self._reset_state()

    # -- state ----------------------------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        s = self.settings
        self._cams: dict[str, deque[Stamped[Any]]] = {
            c: deque(maxlen=s.camera_queue_size) for c in s.cameras if c != s.anchor}
        self._odom: deque[Stamped[Any]] = deque(maxlen=s.odometry_queue_size)
        self._accel: deque[Stamped[Any]] = deque(maxlen=s.odometry_queue_size)
        self._commands: deque[Stamped[Any]] = deque(maxlen=s.odometry_queue_size)
        self._aux = {"odometry": self._odom, "acceleration": self._accel, "command": self._commands}
        self._pending: deque[_Pending] = deque()
        self._last: dict[str, int] = {}

    def update_settings(self, **changes: Any) -> None:
        """Change tolerances/policies at run time (queue sizes and camera lists need a new synchroniser)."""
        for key, value in changes.items():
            if key in ("camera_queue_size", "odometry_queue_size", "cameras", "anchor"):
                raise ValueError(f"{key} cannot change on a running synchroniser")
            if not hasattr(self.settings, key):
                raise AttributeError(f"unknown sync setting {key}")
            setattr(self.settings, key, value)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- inputs ---------------------------------------------------------------------------------------------------

    def _check_order(self, name: str, stamp_ns: int) -> Optional[SyncIssue]:
        last = self._last.get(name)
        if last is not None and stamp_ns <= last:
            self.stats.backwards += 1
            what = "duplicate" if stamp_ns == last else f"{_ms(last - stamp_ns):.1f} ms before the previous one"
            issue = SyncIssue("backwards", stamp_ns, (f"backwards timestamp on {name}: stamp {stamp_ns} is {what}; "
                                                      "message dropped",))
            self.stats.last_reasons = issue.reasons
            return issue
        self._last[name] = stamp_ns
        return None

    def add_image(self, camera: str, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        s = self.settings
        if camera not in s.cameras:
            raise KeyError(f"unknown camera {camera}; expected one of {s.cameras}")
        events: list[SyncEvent] = []
        if camera == s.anchor:
            events.extend(self._maybe_reset(camera, stamp_ns))
            issue = self._check_order(camera, stamp_ns)
            if issue is not None:
                return events + [issue]
            # A newer anchor means every input of the older pending sets has had its chance.
            events.extend(self._expire_all())
            self._pending.append(_Pending(Stamped(stamp_ns, value), now_ns))
        else:
            events.extend(self._maybe_reset(camera, stamp_ns))
            issue = self._check_order(camera, stamp_ns)
            if issue is not None:
                return events + [issue]
            self._cams[camera].append(Stamped(stamp_ns, value))
        return events + self._try_complete()

    def add_odometry(self, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        return self._add_aux("odometry", stamp_ns, value)

    def add_acceleration(self, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        return self._add_aux("acceleration", stamp_ns, value)

    def add_command(self, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        return self._add_aux("command", stamp_ns, value)

    def _add_aux(self, name: str, stamp_ns: int, value: Any) -> list[SyncEvent]:
        events = self._maybe_reset(name, stamp_ns)
        issue = self._check_order(name, stamp_ns)
        if issue is not None:
            return events + [issue]
        self._aux[name].append(Stamped(stamp_ns, value))
        return events + self._try_complete()

    def _maybe_reset(self, name: str, stamp_ns: int) -> list[SyncEvent]:
        """Any input jumping back by ``reset_on_jump_back_ns`` or more clears all state (first input of a restart)."""
        s = self.settings
        last = self._last.get(name)
        if last is None or s.reset_on_jump_back_ns <= 0 or last - stamp_ns < s.reset_on_jump_back_ns:
            return []
        events = self._expire_all()
        self._reset_state()
        self.stats.resets += 1
        events.append(SyncIssue("reset", stamp_ns, (
            f"{name} stamp jumped back by {_ms(last - stamp_ns) / 1000.0:.2f} s: synchroniser reset "
            "(bag restarted or simulation reset)",)))
        return events

    def poll(self, now_ns: int) -> list[SyncEvent]:
        """Expire pending sets that waited ``max_wait_ns`` (call from a timer)."""
        events: list[SyncEvent] = []
        while self._pending and now_ns - self._pending[0].arrived_ns >= self.settings.max_wait_ns:
            events.append(self._finalise(self._pending.popleft()))
        return events

    # -- matching -------------------------------------------------------------------------------------------------

    @staticmethod
    def _nearest(queue: Sequence[Stamped[Any]], stamp_ns: int) -> Optional[Stamped[Any]]:
        if not queue:
            return None
        return min(queue, key=lambda m: abs(m.stamp_ns - stamp_ns))

    def _command(self, anchor_ns: int) -> tuple[Optional[Stamped[Any]], Optional[str]]:
        s = self.settings
        if s.command_policy == "match":
            best = self._nearest(self._commands, anchor_ns)
            if best is not None and abs(best.stamp_ns - anchor_ns) <= s.tolerance_ns:
                return best, None
            near = "" if best is None else f" (nearest {_ms(best.stamp_ns - anchor_ns):+.1f} ms)"
            return None, (f"no driving command stamped within {_ms(s.tolerance_ns):.0f} ms of CAM_FRONT{near} "
                          "(command_policy match)")
        stamps = [m.stamp_ns for m in self._commands]
        i = bisect.bisect_right(stamps, anchor_ns + s.tolerance_ns)
        if i > 0 and anchor_ns - self._commands[i - 1].stamp_ns <= s.command_max_age_ns:
            return self._commands[i - 1], None
        return None, f"no driving command newer than {_ms(s.command_max_age_ns):.0f} ms (command_policy latest)"

    def _match(self, anchor: Stamped[Any]) -> tuple[Optional[FrameSet], list[str]]:
        s = self.settings
        a = anchor.stamp_ns
        tol = s.tolerance_ns
        reasons: list[str] = []
        images: dict[str, Stamped[Any]] = {}
        for cam in s.cameras:
            if cam == s.anchor:
                images[cam] = anchor
                continue
            best = self._nearest(self._cams[cam], a)
            if best is not None and abs(best.stamp_ns - a) <= tol:
                images[cam] = best
            elif best is None:
                reasons.append(f"missing camera {cam}: no frame queued near this CAM_FRONT stamp")
            elif abs(best.stamp_ns - a) <= 2 * tol:
                reasons.append(f"late camera {cam} by {_ms(abs(best.stamp_ns - a) - tol):.1f} ms: nearest frame "
                               f"{_ms(best.stamp_ns - a):+.1f} ms from CAM_FRONT (tolerance {_ms(tol):.0f} ms)")
            else:
                reasons.append(f"missing camera {cam}: nearest frame {_ms(best.stamp_ns - a):+.1f} ms from CAM_FRONT "
                               f"(tolerance {_ms(tol):.0f} ms)")
        odom = self._nearest(self._odom, a)
        if odom is None:
            reasons.append("no odometry received")
        elif abs(odom.stamp_ns - a) > s.odometry_max_age_ns:
            reasons.append(f"stale odometry: nearest odometry {_ms(odom.stamp_ns - a):+.1f} ms from CAM_FRONT "
                           f"(limit {_ms(s.odometry_max_age_ns):.0f} ms)")
        accel = None
        if s.use_acceleration:
            accel = self._nearest(self._accel, a)
            if accel is None:
                reasons.append("no acceleration received (inputs.use_acceleration is true)")
                accel = None
            elif abs(accel.stamp_ns - a) > s.odometry_max_age_ns:
                reasons.append(f"stale acceleration: nearest {_ms(accel.stamp_ns - a):+.1f} ms from CAM_FRONT "
                               f"(limit {_ms(s.odometry_max_age_ns):.0f} ms)")
        command, why = self._command(a)
        if why is not None:
            reasons.append(why)
        if reasons:
            return None, reasons
        assert odom is not None and command is not None
        return FrameSet(a, images, odom, accel, command), []

    def _try_complete(self) -> list[SyncEvent]:
        events: list[SyncEvent] = []
        for pending in list(self._pending):
            frame, _ = self._match(pending.anchor)
            if frame is None:
                continue
            # Older pending sets can no longer complete in order: end them first (reported), then this one.
            while self._pending and self._pending[0] is not pending:
                events.append(self._finalise(self._pending.popleft()))
            self._pending.popleft()
            self._prune(frame)
            self.stats.complete += 1
            events.append(frame)
        return events

    def _finalise(self, pending: _Pending) -> SyncEvent:
        frame, reasons = self._match(pending.anchor)
        if frame is not None:  # an input arrived in time after all
            self._prune(frame)
            self.stats.complete += 1
            return frame
        self.stats.incomplete += 1
        self.stats.last_reasons = tuple(reasons)
        return SyncIssue("incomplete", pending.anchor.stamp_ns, tuple(reasons))

    def _expire_all(self) -> list[SyncEvent]:
        events: list[SyncEvent] = []
        while self._pending:
            events.append(self._finalise(self._pending.popleft()))
        return events

    def _prune(self, frame: FrameSet) -> None:
        """Drop camera frames used by (or older than those of) a completed set: they can never join a later one."""
        for cam, q in self._cams.items():
            used = frame.images[cam].stamp_ns
            while q and q[0].stamp_ns <= used:
                q.popleft()
        horizon = frame.stamp_ns - max(self.settings.odometry_max_age_ns, self.settings.tolerance_ns)
        for q in (self._odom, self._accel):
            while len(q) > 1 and q[0].stamp_ns < horizon:
                q.popleft()


__all__ = ["FrameSet", "FrameSynchronizer", "NS_PER_MS", "Stamped", "SyncEvent", "SyncIssue", "SyncSettings",
           "SyncStats"]
