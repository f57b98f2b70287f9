"""The ego's route: the polyline its navigation follows, monotone progress along it, and the route command.

A vehicle knows where its route goes, not where it will be in three seconds; so the simulator derives the driving
command the way the dataset does (VAD's rule: lateral offset of the point 3 s ahead beyond +/- 2 m), but with the
point taken on the *route* at the distance the ego would cover in 3 s at its current speed, never from a logged
future. Routes can fold back on themselves (a three-point turn drives out to a dead end and back), so the position
on the route is tracked monotonically: each query searches only a window ahead of the last matched arc length.
"""

from __future__ import annotations

import math

import numpy as np

from dima_core.data.ego_motion import driving_command

COMMAND_HORIZON_S = 3.0  # the dataset's command looks at the 3 s point of the future
MIN_LOOKAHEAD_M = 4.0  # a standing or creeping ego still needs to know which way the road turns
MAX_LOOKAHEAD_M = 45.0


class Route:
    """A route polyline (N, 2) in the global frame, with arc lengths and per-point travel direction.

    ``reverse_spans``: arc-length intervals driven in reverse (the vehicle's heading is opposite to the polyline's
    direction there).
    """

    def __init__(
        self, xy: np.ndarray, reverse_spans: list[tuple[float, float]] | None = None, search_window_m: float = 25.0
    ):
        xy = np.asarray(xy, np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 2 or not np.isfinite(xy).all():
            raise ValueError(f"a route needs a finite (N >= 2, 2) polyline, got shape {xy.shape}")
        keep = np.concatenate([[True], np.linalg.norm(np.diff(xy, axis=0), axis=1) > 1e-6])
        self.xy = xy[keep]
        self.s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.xy, axis=0), axis=1))])
        self.length = float(self.s[-1])
        self.reverse_spans = list(reverse_spans or [])
        self.search_window_m = search_window_m
        self._matched = 0.0

    def reset(self, s: float = 0.0) -> None:
        self._matched = float(s)

    @property
    def matched_s(self) -> float:
        return self._matched

    def point(self, s: float) -> np.ndarray:
        s = min(max(s, 0.0), self.length)
        return np.array([np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1])])

    def project(self, xy: np.ndarray, update: bool = True) -> tuple[float, float]:
        """Arc length and distance of ``xy`` (2,) on the route, searched in [matched - 2 m, matched + window]."""
        lo = np.searchsorted(self.s, self._matched - 2.0, side="left")
        hi = np.searchsorted(self.s, self._matched + self.search_window_m, side="right")
        lo, hi = max(0, int(lo) - 1), min(len(self.s) - 1, int(hi))
        a, b = self.xy[lo:hi], self.xy[lo + 1 : hi + 1]
        if len(a) == 0:
            return self._matched, float(np.linalg.norm(np.asarray(xy) - self.point(self._matched)))
        seg = b - a
        seg_len2 = np.maximum((seg**2).sum(1), 1e-12)
        f = np.clip(((np.asarray(xy)[None] - a) * seg).sum(1) / seg_len2, 0.0, 1.0)
        foot = a + f[:, None] * seg
        dist = np.linalg.norm(foot - np.asarray(xy)[None], axis=1)
        i = int(np.argmin(dist))
        s = float(self.s[lo + i] + f[i] * math.sqrt(seg_len2[i]))
        if update:
            self._matched = max(self._matched, s)
        return s, float(dist[i])

    def in_reverse_span(self, s: float) -> bool:
        return any(a - 1e-6 <= s <= b + 1e-6 for a, b in self.reverse_spans)

    def command(self, x: float, y: float, yaw: float, speed: float) -> int:
        """Route command (0 right, 1 left, 2 straight) for an ego at (x, y, yaw) driving at ``speed``; updates the
        matched progress."""
        s, _ = self.project(np.array([x, y]))
        ahead = min(max(abs(speed) * COMMAND_HORIZON_S, MIN_LOOKAHEAD_M), MAX_LOOKAHEAD_M)
        target = self.point(s + ahead)
        dx, dy = target[0] - x, target[1] - y
        c, sn = math.cos(yaw), math.sin(yaw)
        in_ego = np.array([[c * dx + sn * dy, -sn * dx + c * dy]])
        return driving_command(in_ego, np.array([True]))  # the data layer's rule, on the route point


def route_of_driver(driver) -> Route:
    """The route of an expert :class:`~dima_core.data.synth.traffic.Driver`: its segments' paths in order, with
    the reversing segments marked; matched at the driver's current position (``driver.seg``, ``driver.s``)."""
    parts, spans, s0 = [], [], 0.0
    for seg in driver.segments:
        xy = np.asarray(seg.path.xy, np.float64)
        if parts and np.linalg.norm(xy[0] - parts[-1][-1]) < 1e-6:
            xy = xy[1:]
        # Measured from the previous leg's end, so a gap between legs counts as route length (as Route.s does).
        length = float(
            np.linalg.norm(np.diff(np.concatenate([parts[-1][-1:], xy]) if parts else xy, axis=0), axis=1).sum()
        )
        if seg.path.reverse:
            spans.append((s0, s0 + length))
        parts.append(xy)
        s0 += length
    route = Route(np.concatenate(parts), spans)
    start = sum(float(seg.path.length) for seg in driver.segments[: driver.seg]) + float(driver.s)
    route.reset(min(start, route.length))
    return route


__all__ = ["COMMAND_HORIZON_S", "Route", "route_of_driver"]
