"""Planar geometry for the synthetic world: polylines with arc length, offsets, arcs, tokens.

All coordinates are in the *global* map frame of one nuScenes location (x east, y north, metres) unless a
docstring says otherwise. Headings (yaw) are radians counter-clockwise from +x. What the rest of the library shares
(angle wrapping, yaw quaternions, box footprints) is in :mod:`dima_core.data.geometry`.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from dima_core.data.geometry import wrap_angle


def token(*parts: object) -> str:
    """Deterministic 32-hex-digit token (nuScenes style) from any printable parts; no time or randomness."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def rot2(yaw: float) -> np.ndarray:
    """(2, 2) rotation matrix."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s], [s, c]])


def resample(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resample a polyline (N, 2) to (M, 2) points spaced ``spacing`` apart along its length (ends kept)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], seg > 1e-9])
    points = points[keep]
    s = np.concatenate([[0.0], np.cumsum(seg[seg > 1e-9])])
    n = max(2, int(math.ceil(s[-1] / spacing)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


def headings(points: np.ndarray) -> np.ndarray:
    """(N,) tangent heading at each polyline vertex (central differences, one-sided at the ends)."""
    d = np.gradient(points, axis=0)
    return np.arctan2(d[:, 1], d[:, 0])


def offset(points: np.ndarray, dist: float | np.ndarray) -> np.ndarray:
    """Offset a polyline (N, 2) to the left by ``dist`` (scalar or (N,)); negative moves it right."""
    h = headings(points)
    normal = np.stack([-np.sin(h), np.cos(h)], axis=1)
    return points + normal * np.asarray(dist, dtype=float).reshape(-1, 1)


def arc_points(x: float, y: float, yaw: float, curvature: float, length: float, spacing: float = 0.5) -> np.ndarray:
    """(N, 3) poses x, y, yaw along a constant-curvature arc; ``length`` < 0 drives it backwards (yaw unchanged
    in meaning: the vehicle heading, not the direction of travel)."""
    n = max(2, int(math.ceil(abs(length) / spacing)) + 1)
    s = np.linspace(0.0, length, n)
    if abs(curvature) < 1e-9:
        return np.stack([x + s * math.cos(yaw), y + s * math.sin(yaw), np.full(n, yaw)], axis=1)
    h = yaw + curvature * s
    px = x + (np.sin(h) - math.sin(yaw)) / curvature
    py = y - (np.cos(h) - math.cos(yaw)) / curvature
    return np.stack([px, py, h], axis=1)


class Path:
    """A dense polyline with arc length, for actors to drive along.

    ``xy`` (N, 2) points in order of travel, ``s`` (N,) cumulative arc length, ``yaw`` (N,) the heading of the
    *vehicle* at each point (the tangent, or tangent + pi for reversing segments).
    """

    def __init__(self, xy: np.ndarray, reverse: bool = False, spacing: float = 0.5):
        self.xy = resample(np.asarray(xy, dtype=float), spacing)
        seg = np.linalg.norm(np.diff(self.xy, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self.tangent = headings(self.xy)
        self.reverse = reverse
        self.yaw = wrap_angle(self.tangent + (math.pi if reverse else 0.0))
        self.length = float(self.s[-1])
        # Curvature (1/m) from the heading change per metre, smoothed: used for the comfortable-speed limit.
        dh = np.gradient(np.unwrap(self.tangent))
        ds = np.maximum(np.gradient(self.s), 1e-6)
        k = np.abs(dh / ds)
        self.curvature = np.convolve(k, np.ones(9) / 9.0, mode="same")

    def at(self, s: float) -> tuple[float, float, float]:
        """x, y, vehicle yaw at arc length ``s`` (clamped to the path)."""
        s = min(max(s, 0.0), self.length)
        i = int(np.searchsorted(self.s, s, side="right")) - 1
        i = min(max(i, 0), len(self.s) - 2)
        f = (s - self.s[i]) / max(self.s[i + 1] - self.s[i], 1e-9)
        x = self.xy[i, 0] + f * (self.xy[i + 1, 0] - self.xy[i, 0])
        y = self.xy[i, 1] + f * (self.xy[i + 1, 1] - self.xy[i, 1])
        dyaw = wrap_angle(float(self.yaw[i + 1] - self.yaw[i]))
        return float(x), float(y), float(wrap_angle(float(self.yaw[i] + f * dyaw)))

    def index(self, s: float) -> int:
        return int(min(max(np.searchsorted(self.s, s), 0), len(self.s) - 1))

    def project(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project points (M, 2) onto the path: arc length (M,) and signed lateral offset (M,), left positive."""
        d = xy[:, None, :] - self.xy[None, :, :]
        dist2 = (d**2).sum(-1)
        i = np.argmin(dist2, axis=1)
        t = self.tangent[i]
        rel = xy - self.xy[i]
        along = rel[:, 0] * np.cos(t) + rel[:, 1] * np.sin(t)
        lat = -rel[:, 0] * np.sin(t) + rel[:, 1] * np.cos(t)
        return self.s[i] + along, lat
