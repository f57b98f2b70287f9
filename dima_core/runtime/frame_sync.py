"""Frame-set synchronisation for the planner node, anchored on CAM_FRONT (as Autoware's VAD node), pure Python.

Every input is stamped (``header.stamp`` in integer nanoseconds) and queued in a bounded deque. A CAM_FRONT frame
opens a *pending* frame set; the set is complete when each other camera has a frame within ``tolerance_ns`` of the
anchor stamp, odometry (and acceleration when used) lies within ``odometry_max_age_ns`` of it, and a driving command
is acceptable under the command policy.

When to give up is decided by **stamps first, wall time second**. Every input is in stamp order (an older or equal
stamp is rejected, below), so once an input has delivered something stamped past the set's acceptance window
(``anchor + tolerance`` for cameras and a ``match`` command, ``anchor + odometry_max_age`` for odometry and
acceleration) it can never deliver a match any more: that input is *settled*. A set whose every input is matched or
settled is decided without looking at a clock; if some input settled without a match the set ends as
:class:`SyncIssue` with one reason per unmatched input. Stamps alone cannot tell a late input from a dead one, so
wall time bounds the rest:

- an input that has **gone quiet** -- nothing received for ``max_wait_ns`` and for two of its own mean message
  intervals (a 1 Hz replay stream is not quiet after 300 ms; a 12 Hz camera is) -- ends every set that has itself
  waited ``max_wait_ns``: a dead camera or odometry driver is reported within about ``max_wait_ns``;
- an input that is **still publishing** but has not reached the anchor stamp yet (a loaded machine can run the
  odometry or command callback hundreds of milliseconds after the cameras) is waited for up to ``max_delay_ns`` of
  wall time, so a frame is not lost merely because its auxiliary message is late;
- a set that can no longer complete (an input settled without a match) waits for its other inputs only so that
  every reason is exact (late vs. missing), and at most ``max_wait_ns``: it is only a report now;
- at most ``camera_queue_size`` sets wait at once (older sets could not find their camera frames in the bounded
  camera queues any more); a newer CAM_FRONT frame beyond that ends the oldest. A newer set that completes ends all
  older ones (they could only be planned out of order).

Matches are recorded in the pending set as they arrive (the nearest acceptable message so far; for the ``latest``
command policy the newest), so a match cannot be lost to queue eviction while the set waits for a slower input.

A stamp older than (or equal to) the previous stamp of the same input is rejected with a ``backwards`` issue: it is
either a duplicate or a clock problem, and pairing it would build a frame set across time. A stamp far behind the
previous one of its input (``reset_on_jump_back_ns``: a bag restarted, a simulator reset) clears all state instead.

Nothing here knows ROS: values are opaque payloads (the node stores its messages), stamps and wall times are ints.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from dima_core.constants import CAMERA_NAMES

T = TypeVar("T")
NS_PER_MS = 1_000_000
# Wall-clock arrival times kept per input to estimate its message interval (the liveness test). Eight messages
# average over bursts (a starved executor delivers several callbacks back to back) without remembering stale rates.
ARRIVAL_HISTORY = 8


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
    acceleration: Stamped[Any] | None
    command: Stamped[Any]


IssueKind = Literal["incomplete", "backwards", "reset", "overflow"]


@dataclass
class SyncIssue:
    """Why no frame set was produced for ``stamp_ns``; ``reasons`` are human-readable, one per problem."""

    kind: IssueKind
    stamp_ns: int
    reasons: tuple[str, ...]


SyncEvent = FrameSet | SyncIssue


@dataclass
class SyncStats:
    """Counters for diagnostics. ``late_completed``: sets that completed after waiting longer than ``max_wait_ns``
    (an input was late but alive; the design this module exists for)."""

    complete: int = 0
    incomplete: int = 0
    backwards: int = 0
    resets: int = 0
    late_completed: int = 0
    last_reasons: tuple[str, ...] = ()


def _ms(ns: float) -> float:
    return ns / NS_PER_MS


@dataclass
class SyncSettings:
    """Tunable settings (the node maps its ``sync.*`` and ``inputs.*`` parameters onto these)."""

    tolerance_ns: int = 60 * NS_PER_MS
    max_wait_ns: int = 300 * NS_PER_MS
    max_delay_ns: int = 2000 * NS_PER_MS
    odometry_max_age_ns: int = 150 * NS_PER_MS
    command_policy: Literal["match", "latest"] = "match"
    command_max_age_ns: int = 5000 * NS_PER_MS
    reset_on_jump_back_ns: int = 2000 * NS_PER_MS  # 0 disables
    use_acceleration: bool = True
    camera_queue_size: int = 4
    odometry_queue_size: int = 50
    cameras: tuple[str, ...] = field(default_factory=lambda: tuple(CAMERA_NAMES))
    anchor: str = "CAM_FRONT"


InputKind = Literal["camera", "odometry", "acceleration", "command"]


class _Input:
    """One non-anchor input: its bounded message queue and the wall times its recent messages arrived."""

    def __init__(self, name: str, kind: InputKind, maxlen: int) -> None:
        self.name = name
        self.kind = kind
        self.queue: deque[Stamped[Any]] = deque(maxlen=maxlen)
        self.arrivals: deque[int] = deque(maxlen=ARRIVAL_HISTORY)

    @property
    def label(self) -> str:
        return {"camera": f"camera {self.name}", "command": "driving command"}.get(self.kind, self.kind)

    def silence_ns(self, now_ns: int) -> int | None:
        """Wall time since the last message, None if nothing was ever received."""
        return now_ns - self.arrivals[-1] if self.arrivals else None

    def mean_interval_ns(self) -> int:
        """Mean wall interval of the recent messages (0 with fewer than two): the span over the count, so a burst of
        back-to-back deliveries after a stall does not make a slow stream look fast."""
        if len(self.arrivals) < 2:
            return 0
        return (self.arrivals[-1] - self.arrivals[0]) // (len(self.arrivals) - 1)


@dataclass
class _Pending:
    anchor: Stamped[Any]
    arrived_ns: int  # wall (monotonic) time the anchor arrived
    matches: dict[str, Stamped[Any]] = field(default_factory=dict)  # input name -> best acceptable message so far


class FrameSynchronizer:
    """CAM_FRONT-anchored synchroniser with bounded queues; every ``add_*`` and :meth:`poll` returns the events it
    caused (complete :class:`FrameSet` s and :class:`SyncIssue` s)."""

    def __init__(self, settings: SyncSettings | None = None) -> None:
        self.settings = settings or SyncSettings()
        if self.settings.anchor not in self.settings.cameras:
            raise ValueError(f"anchor camera {self.settings.anchor} is not one of {self.settings.cameras}")
        self.stats = SyncStats()
        self._reset_state()

    # -- state ----------------------------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        s = self.settings
        self._inputs: dict[str, _Input] = {
            c: _Input(c, "camera", s.camera_queue_size) for c in s.cameras if c != s.anchor
        }
        self._inputs["odometry"] = _Input("odometry", "odometry", s.odometry_queue_size)
        if s.use_acceleration:
            self._inputs["acceleration"] = _Input("acceleration", "acceleration", s.odometry_queue_size)
        self._inputs["command"] = _Input("command", "command", s.odometry_queue_size)
        self._pending: deque[_Pending] = deque()
        self._last: dict[str, int] = {}

    @property
    def _cams(self) -> dict[str, deque[Stamped[Any]]]:
        """Camera queues by name (bounded by ``camera_queue_size``)."""
        return {name: inp.queue for name, inp in self._inputs.items() if inp.kind == "camera"}

    def update_settings(self, **changes: Any) -> None:
        """Change tolerances/policies at run time (queue sizes and camera lists need a new synchroniser). Waiting
        sets re-match against the queued messages under the new settings."""
        for key, value in changes.items():
            if key in ("camera_queue_size", "odometry_queue_size", "cameras", "anchor", "use_acceleration"):
                raise ValueError(f"{key} cannot change on a running synchroniser")
            if not hasattr(self.settings, key):
                raise AttributeError(f"unknown sync setting {key}")
            setattr(self.settings, key, value)
        for pending in self._pending:
            pending.matches = self._initial_matches(pending.anchor.stamp_ns)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- inputs ---------------------------------------------------------------------------------------------------

    def _check_order(self, name: str, stamp_ns: int) -> SyncIssue | None:
        last = self._last.get(name)
        if last is not None and stamp_ns <= last:
            self.stats.backwards += 1
            what = "duplicate" if stamp_ns == last else f"{_ms(last - stamp_ns):.1f} ms before the previous one"
            issue = SyncIssue(
                "backwards", stamp_ns, (f"backwards timestamp on {name}: stamp {stamp_ns} is {what}; message dropped",)
            )
            self.stats.last_reasons = issue.reasons
            return issue
        self._last[name] = stamp_ns
        return None

    def add_image(self, camera: str, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        s = self.settings
        if camera not in s.cameras:
            raise KeyError(f"unknown camera {camera}; expected one of {s.cameras}")
        if camera != s.anchor:
            return self._add(camera, stamp_ns, value, now_ns)
        events = self._maybe_reset(camera, stamp_ns)
        issue = self._check_order(camera, stamp_ns)
        if issue is not None:
            return events + [issue]
        if len(self._pending) >= max(1, s.camera_queue_size):
            # Bounded memory: the oldest set's camera frames are about to fall out of the camera queues anyway.
            oldest = self._pending.popleft()
            events.append(
                self._give_up(
                    oldest,
                    now_ns,
                    (f"gave up waiting: {s.camera_queue_size} newer CAM_FRONT frames arrived while it waited",),
                )
            )
        self._pending.append(_Pending(Stamped(stamp_ns, value), now_ns, self._initial_matches(stamp_ns)))
        return events + self._advance(now_ns)

    def add_odometry(self, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        return self._add("odometry", stamp_ns, value, now_ns)

    def add_acceleration(self, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        if "acceleration" not in self._inputs:
            return []  # not used (inputs.use_acceleration false): ignore rather than wait for it
        return self._add("acceleration", stamp_ns, value, now_ns)

    def add_command(self, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        return self._add("command", stamp_ns, value, now_ns)

    def _add(self, name: str, stamp_ns: int, value: Any, now_ns: int) -> list[SyncEvent]:
        events = self._maybe_reset(name, stamp_ns)
        issue = self._check_order(name, stamp_ns)
        if issue is not None:
            return events + [issue]
        inp = self._inputs[name]
        msg = Stamped(stamp_ns, value)
        inp.queue.append(msg)
        inp.arrivals.append(now_ns)
        for pending in self._pending:
            self._offer(pending, inp, msg)
        return events + self._advance(now_ns)

    def _maybe_reset(self, name: str, stamp_ns: int) -> list[SyncEvent]:
        """Any input jumping back by ``reset_on_jump_back_ns`` or more clears all state (first input of a restart).
        Sets still waiting are reported as they stand: their inputs will not come any more."""
        s = self.settings
        last = self._last.get(name)
        if last is None or s.reset_on_jump_back_ns <= 0 or last - stamp_ns < s.reset_on_jump_back_ns:
            return []
        events: list[SyncEvent] = [self._give_up(p, None, ()) for p in self._pending]
        self._reset_state()
        self.stats.resets += 1
        events.append(
            SyncIssue(
                "reset",
                stamp_ns,
                (
                    f"{name} stamp jumped back by {_ms(last - stamp_ns) / 1000.0:.2f} s: synchroniser reset "
                    "(bag restarted or simulation reset)",
                ),
            )
        )
        return events

    def poll(self, now_ns: int) -> list[SyncEvent]:
        """Apply the wall-clock bounds (call from a timer): end sets waiting on a quiet input or past the delay."""
        return self._advance(now_ns)

    # -- matching -------------------------------------------------------------------------------------------------

    def _window_end(self, inp: _Input, anchor_ns: int) -> int:
        """The latest stamp that can still match ``anchor_ns``: an input past it (in stamp order) is settled."""
        s = self.settings
        if inp.kind in ("odometry", "acceleration"):
            return anchor_ns + s.odometry_max_age_ns
        return anchor_ns + s.tolerance_ns

    def _acceptable(self, inp: _Input, stamp_ns: int, anchor_ns: int) -> bool:
        s = self.settings
        if inp.kind in ("odometry", "acceleration"):
            return abs(stamp_ns - anchor_ns) <= s.odometry_max_age_ns
        if inp.kind == "command" and s.command_policy == "latest":
            return stamp_ns <= anchor_ns + s.tolerance_ns and anchor_ns - stamp_ns <= s.command_max_age_ns
        return abs(stamp_ns - anchor_ns) <= s.tolerance_ns

    def _better(self, inp: _Input, new: Stamped[Any], old: Stamped[Any] | None, anchor_ns: int) -> bool:
        if old is None:
            return True
        if inp.kind == "command" and self.settings.command_policy == "latest":
            return new.stamp_ns > old.stamp_ns  # the newest command the vehicle had at the anchor time
        return abs(new.stamp_ns - anchor_ns) < abs(old.stamp_ns - anchor_ns)

    def _offer(self, pending: _Pending, inp: _Input, msg: Stamped[Any]) -> None:
        a = pending.anchor.stamp_ns
        if self._acceptable(inp, msg.stamp_ns, a) and self._better(inp, msg, pending.matches.get(inp.name), a):
            pending.matches[inp.name] = msg

    def _initial_matches(self, anchor_ns: int) -> dict[str, Stamped[Any]]:
        """Best acceptable message per input among those already queued (auxiliary inputs usually come first)."""
        pending = _Pending(Stamped(anchor_ns, None), 0)
        for inp in self._inputs.values():
            for msg in inp.queue:
                self._offer(pending, inp, msg)
        return pending.matches

    def _settled(self, inp: _Input, anchor_ns: int) -> bool:
        last = self._last.get(inp.name)
        return last is not None and last > self._window_end(inp, anchor_ns)

    def _quiet(self, inp: _Input, now_ns: int) -> bool:
        """Nothing received for ``max_wait_ns`` and for two of the input's own mean intervals (or never anything)."""
        silence = inp.silence_ns(now_ns)
        return silence is None or silence >= max(self.settings.max_wait_ns, 2 * inp.mean_interval_ns())

    def _advance(self, now_ns: int) -> list[SyncEvent]:
        """Decide every pending set that can be decided now (oldest first)."""
        s = self.settings
        events: list[SyncEvent] = []
        i = 0
        while i < len(self._pending):
            pending = self._pending[i]
            waiting = [
                inp
                for inp in self._inputs.values()
                if inp.name not in pending.matches and not self._settled(inp, pending.anchor.stamp_ns)
            ]
            unmatched = [inp for inp in self._inputs.values() if inp.name not in pending.matches]
            if not unmatched:
                # Older sets could only be planned out of order now: end them (reported), then emit this one.
                for _ in range(i):
                    older = self._pending.popleft()
                    events.append(
                        self._give_up(
                            older, now_ns, (f"a newer CAM_FRONT frame ({pending.anchor.stamp_ns}) completed first",)
                        )
                    )
                self._pending.popleft()
                events.append(self._complete(pending, now_ns))
                i = 0
                continue
            waited = now_ns - pending.arrived_ns
            # A set that can no longer complete (an input settled without a match) still waits for its other
            # inputs, so that each reason is exact (late vs. missing), but not beyond max_wait: it is only a report.
            failed = len(waiting) < len(unmatched)
            if (
                not waiting
                or waited >= s.max_delay_ns
                or (waited >= s.max_wait_ns and (failed or any(self._quiet(inp, now_ns) for inp in waiting)))
            ):
                del self._pending[i]
                events.append(self._give_up(pending, now_ns, ()))
                continue
            i += 1
        return events

    def _complete(self, pending: _Pending, now_ns: int) -> FrameSet:
        s = self.settings
        m = pending.matches
        images = {cam: (pending.anchor if cam == s.anchor else m[cam]) for cam in s.cameras}
        frame = FrameSet(pending.anchor.stamp_ns, images, m["odometry"], m.get("acceleration"), m["command"])
        self._prune(frame)
        self.stats.complete += 1
        if now_ns - pending.arrived_ns > s.max_wait_ns:
            self.stats.late_completed += 1
        return frame

    # -- reporting ------------------------------------------------------------------------------------------------

    @staticmethod
    def _nearest(queue: Sequence[Stamped[Any]], stamp_ns: int) -> Stamped[Any] | None:
        if not queue:
            return None
        return min(queue, key=lambda m: abs(m.stamp_ns - stamp_ns))

    def _reason(self, inp: _Input, anchor_ns: int) -> str:
        """Why ``inp`` has no match for ``anchor_ns`` (the wording the node's diagnostics and docs use)."""
        s = self.settings
        a = anchor_ns
        tol = s.tolerance_ns
        if inp.kind == "camera":
            best = self._nearest(inp.queue, a)
            cam = inp.name
            if best is None:
                return f"missing camera {cam}: no frame queued near this CAM_FRONT stamp"
            if abs(best.stamp_ns - a) <= 2 * tol:
                return (
                    f"late camera {cam} by {_ms(abs(best.stamp_ns - a) - tol):.1f} ms: nearest frame "
                    f"{_ms(best.stamp_ns - a):+.1f} ms from CAM_FRONT (tolerance {_ms(tol):.0f} ms)"
                )
            return (
                f"missing camera {cam}: nearest frame {_ms(best.stamp_ns - a):+.1f} ms from CAM_FRONT "
                f"(tolerance {_ms(tol):.0f} ms)"
            )
        if inp.kind in ("odometry", "acceleration"):
            best = self._nearest(inp.queue, a)
            if best is None and inp.kind == "odometry":
                return "no odometry received"
            if best is None:
                return "no acceleration received (inputs.use_acceleration is true)"
            what = "nearest odometry" if inp.kind == "odometry" else "nearest"
            return (
                f"stale {inp.kind}: {what} {_ms(best.stamp_ns - a):+.1f} ms from CAM_FRONT "
                f"(limit {_ms(s.odometry_max_age_ns):.0f} ms)"
            )
        if s.command_policy == "match":
            best = self._nearest(inp.queue, a)
            near = "" if best is None else f" (nearest {_ms(best.stamp_ns - a):+.1f} ms)"
            return f"no driving command stamped within {_ms(tol):.0f} ms of CAM_FRONT{near} (command_policy match)"
        return f"no driving command newer than {_ms(s.command_max_age_ns):.0f} ms (command_policy latest)"

    def _give_up(self, pending: _Pending, now_ns: int | None, extra: tuple[str, ...]) -> SyncIssue:
        """End ``pending`` without a trajectory: one reason per unmatched input, with how the wait ended for an
        input that was still expected (quiet vs. still publishing), then ``extra``."""
        a = pending.anchor.stamp_ns
        reasons: list[str] = []
        for inp in self._inputs.values():
            if inp.name in pending.matches:
                continue
            reason = self._reason(inp, a)
            silence = None if now_ns is None else inp.silence_ns(now_ns)
            if silence is not None and not self._settled(inp, a):
                assert now_ns is not None
                if self._quiet(inp, now_ns):
                    reason += f"; no {inp.label} message for {_ms(silence):.0f} ms"
                else:
                    newest = self._last.get(inp.name, a)
                    reason += (
                        f"; {inp.label} not quiet (last message {_ms(silence):.0f} ms ago, mean interval "
                        f"{_ms(inp.mean_interval_ns()):.0f} ms) but nothing past this stamp yet (newest "
                        f"{_ms(newest - a):+.1f} ms) after {_ms(now_ns - pending.arrived_ns):.0f} ms"
                    )
            reasons.append(reason)
        reasons.extend(extra)
        self.stats.incomplete += 1
        self.stats.last_reasons = tuple(reasons)
        return SyncIssue("incomplete", a, tuple(reasons))

    def _prune(self, frame: FrameSet) -> None:
        """Drop camera frames used by (or older than those of) a completed set: they can never join a later one."""
        for cam, inp in self._inputs.items():
            if inp.kind != "camera":
                continue
            used = frame.images[cam].stamp_ns
            while inp.queue and inp.queue[0].stamp_ns <= used:
                inp.queue.popleft()
        horizon = frame.stamp_ns - max(self.settings.odometry_max_age_ns, self.settings.tolerance_ns)
        for name in ("odometry", "acceleration"):
            q = self._inputs[name].queue if name in self._inputs else None
            while q is not None and len(q) > 1 and q[0].stamp_ns < horizon:
                q.popleft()


__all__ = [
    "ARRIVAL_HISTORY",
    "FrameSet",
    "FrameSynchronizer",
    "NS_PER_MS",
    "Stamped",
    "SyncEvent",
    "SyncIssue",
    "SyncSettings",
    "SyncStats",
]
