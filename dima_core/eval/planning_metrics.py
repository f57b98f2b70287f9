"""Open-loop planning metrics on nuScenes-format data: L2 and collision rate in two conventions (docs/design.md,
Evaluation protocol).

Per sample (only samples whose GT ego future has all 6 steps are scored):

- ``l2[t]`` = Euclidean distance (m) between the predicted and GT ego positions at step t = 1..6 (0.5 .. 3.0 s),
  both ``(6, 2)`` in the current ego frame (x forward, y left).
- ``collision[t]`` = 1 when the ego footprint placed at the predicted waypoint t covers any occupied cell of the GT
  occupancy at t (:mod:`dima_core.eval.occupancy`), *and* the footprint placed at the GT waypoint t does not: a step
  where the GT ego itself "collides" (annotation noise, agents overlapping the ego) never counts, but it stays in the
  denominator (VAD averages it as 0 per sample; UniAD divides by the sample total).

Ego footprint (VAD ``metric_stp3.py`` / ST-P3 / UniAD ``PlanningMetric.evaluate_single_coll``): a box EGO_WIDTH_M
wide and EGO_LENGTH_M long whose centre is EGO_FOOTPRINT_FORWARD_OFFSET_M ahead of the waypoint, axes kept aligned
with the *current* ego heading (it is translated to each waypoint, never rotated along the trajectory). It is
rasterised once as a template of cells and shifted by the waypoint, with VAD's exact index arithmetic:

- template: the cells whose integer indices lie inside the box drawn in an index space with cell centres at
  ``-49.75 + 0.5 i`` (VAD's ``bx``): rows ``i`` with ``-L/2 + 0.5 <= -49.75 + 0.5 i <= L/2 + 0.5`` and columns
  ``j`` with ``-W/2 <= -49.75 + 0.5 j <= W/2`` (VAD calls skimage's polygon; for an axis-aligned box that is this
  range of integers, and with the project constants no bound is an integer, so the edge rule does not matter);
  8 x 4 = 32 cells, as VAD's comment ``(n_future, 32, 2)`` says;
- shift: ``row = trunc(200 - x / 0.5 - i)``, ``col = trunc(-y / 0.5 + j)`` (VAD's lidar frame has x to the right,
  our ``-y``), then clipped into [0, 199], so a footprint leaving the grid reads the border cells, as VAD does.

The occupancy grid places a point at ``((50 - x) / 0.5, (50 - y) / 0.5)`` while the template was drawn about
``-49.75``, so VAD's footprint lands half a cell off the geometric box (it covers x in [-1.5, 2.0] m and
y in [-0.5, 1.0] m around a waypoint at the origin). We keep that offset on purpose: the numbers stay comparable
with VAD's and the papers that reuse its code.

Aggregation over the N scored samples, k = 1, 2, 3 s (steps 1..2k):

- VAD / "ST-P3" (cumulative): ``L2@k = mean_samples(mean_{t<=2k} l2[t])``, ``Col@k = 100 * mean_samples(mean_{t<=2k}
  collision[t])``; ``avg`` = mean of the 1 s, 2 s, 3 s values.
- UniAD (per-timestep): ``L2@k = mean_samples(l2[2k])``, ``Col@k = 100 * mean_samples(collision[2k])``; ``avg`` =
  mean of the three.

Collision is reported in percent, L2 in metres. Every report carries these definitions in its ``formula`` string.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from dima_core.constants import (
    COMMAND_LATERAL_THRESHOLD_M,
    COMMAND_STRAIGHT,
    EGO_FOOTPRINT_FORWARD_OFFSET_M,
    EGO_LENGTH_M,
    EGO_WIDTH_M,
    FUTURE_STEPS,
    STEP_SECONDS,
)
from dima_core.data.ego_motion import driving_command
from dima_core.data.sample import DrivingSample
from dima_core.eval.occupancy import (
    GRID_HALF_EXTENT_M,
    GRID_RESOLUTION_M,
    GRID_SIZE,
    OccupancyConfig,
    build_occupancy,
)

HORIZONS_S: tuple[int, ...] = (1, 2, 3)
CONVENTIONS: tuple[str, ...] = ("vad", "uniad")
LONGTAIL_SPLITS: tuple[str, ...] = ("overtake", "three_point_turn", "resume_from_stop")
TURNING_SPLIT = "turning"
REPORT_SPLITS: tuple[str, ...] = LONGTAIL_SPLITS + (TURNING_SPLIT,)

_STEPS_PER_SECOND = int(round(1.0 / STEP_SECONDS))


# ----------------------------------------------------------------------------------------------------- footprint


def _footprint_template() -> tuple[np.ndarray, np.ndarray]:
    """(K,) row and (K,) column template offsets of the ego footprint in VAD's index space (module docstring)."""
    centre0 = -GRID_HALF_EXTENT_M + GRID_RESOLUTION_M / 2.0  # VAD's bx: index 0 sits at -49.75 m
    lo_f = (-EGO_LENGTH_M / 2.0 + EGO_FOOTPRINT_FORWARD_OFFSET_M - centre0) / GRID_RESOLUTION_M
    hi_f = (EGO_LENGTH_M / 2.0 + EGO_FOOTPRINT_FORWARD_OFFSET_M - centre0) / GRID_RESOLUTION_M
    lo_l = (-EGO_WIDTH_M / 2.0 - centre0) / GRID_RESOLUTION_M
    hi_l = (EGO_WIDTH_M / 2.0 - centre0) / GRID_RESOLUTION_M
    rows = np.arange(math.ceil(lo_f), math.floor(hi_f) + 1)
    cols = np.arange(math.ceil(lo_l), math.floor(hi_l) + 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return rr.ravel().astype(np.float64), cc.ravel().astype(np.float64)


_TEMPLATE_ROWS, _TEMPLATE_COLS = _footprint_template()


def footprint_cells(trajectory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid cells covered by the ego footprint at each waypoint (axes aligned with the current heading).

    Args:
        trajectory: (..., T, 2) waypoints in the current ego frame, metres.

    Returns:
        rows, cols: (..., T, K) int64 indices into a (GRID_SIZE, GRID_SIZE) occupancy slice, clipped to the grid;
        K = 32 with the project's footprint constants.
    """
    traj = np.asarray(trajectory, np.float64)
    x = traj[..., 0:1] / GRID_RESOLUTION_M
    y = traj[..., 1:2] / GRID_RESOLUTION_M
    # np.trunc == VAD's astype(np.int32) (round towards zero) before its clip.
    rows = np.trunc(GRID_SIZE - x - _TEMPLATE_ROWS).astype(np.int64)
    cols = np.trunc(-y + _TEMPLATE_COLS).astype(np.int64)
    return np.clip(rows, 0, GRID_SIZE - 1), np.clip(cols, 0, GRID_SIZE - 1)


def footprint_collisions(trajectory: np.ndarray, occupancy: np.ndarray) -> np.ndarray:
    """Per-step footprint/occupancy overlap.

    Args:
        trajectory: (..., T, 2) waypoints in the current ego frame.
        occupancy: (..., T, GRID_SIZE, GRID_SIZE) bool GT occupancy with the same leading shape.

    Returns:
        (..., T) bool, True where any footprint cell at step t is occupied at t.
    """
    occ = np.asarray(occupancy, bool)
    rows, cols = footprint_cells(trajectory)
    lead = occ.shape[:-2]  # (..., T)
    flat = occ.reshape(-1, GRID_SIZE * GRID_SIZE)
    idx = (rows * GRID_SIZE + cols).reshape(flat.shape[0], -1)
    hits = np.take_along_axis(flat, idx, axis=1)
    return hits.any(axis=1).reshape(lead)


# ----------------------------------------------------------------------------------------------------- per sample


def per_step_l2(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(..., T) Euclidean distance per step between (..., T, 2) predicted and GT positions, metres."""
    diff = np.asarray(pred, np.float64) - np.asarray(gt, np.float64)
    return np.sqrt((diff**2).sum(axis=-1))


def _check_traj(name: str, traj: np.ndarray, lead: tuple[int, ...] = ()) -> np.ndarray:
    arr = np.asarray(traj, np.float64)
    if arr.shape != (*lead, FUTURE_STEPS, 2):
        raise ValueError(f"{name} must have shape {(*lead, FUTURE_STEPS, 2)}, got {arr.shape}")
    return arr


def score_batch(pred: np.ndarray, gt: np.ndarray, gt_mask: np.ndarray, occupancy: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised per-step scores of B samples.

    Args:
        pred: (B, 6, 2) predicted waypoints, current ego frame.
        gt: (B, 6, 2) GT ego future, current ego frame.
        gt_mask: (B, 6) bool validity of the GT future.
        occupancy: (B, 6, GRID_SIZE, GRID_SIZE) bool GT occupancy (:func:`dima_core.eval.occupancy.build_occupancy`).

    Returns:
        ``valid`` (B,) bool (full 6-step GT future; only these are scored), ``l2`` (B, 6) metres,
        ``collision`` (B, 6) bool counted collisions (GT-colliding steps forced to False), ``gt_collision`` (B, 6)
        bool. Rows of invalid samples are still filled but must not be aggregated.
    """
    gt_mask = np.asarray(gt_mask, bool)
    b = gt_mask.shape[0]
    pred = _check_traj("pred", pred, (b,))
    gt = _check_traj("gt", gt, (b,))
    if gt_mask.shape != (b, FUTURE_STEPS):
        raise ValueError(f"gt_mask must have shape {(b, FUTURE_STEPS)}, got {gt_mask.shape}")
    occupancy = np.asarray(occupancy, bool)
    if occupancy.shape != (b, FUTURE_STEPS, GRID_SIZE, GRID_SIZE):
        raise ValueError(f"occupancy must have shape {(b, FUTURE_STEPS, GRID_SIZE, GRID_SIZE)}, got {occupancy.shape}")
    if not np.isfinite(pred).all():
        raise ValueError("pred contains NaN or infinite values")
    gt_col = footprint_collisions(gt, occupancy)
    pred_col = footprint_collisions(pred, occupancy)
    return {
        "valid": gt_mask.all(axis=1),
        "l2": per_step_l2(pred, gt),
        "collision": pred_col & ~gt_col,
        "gt_collision": gt_col,
    }


# ----------------------------------------------------------------------------------------------------- aggregation


def _horizon_key(k: int) -> str:
    return f"{k}s"


def summarize(l2: np.ndarray, collision: np.ndarray) -> dict[str, dict[str, dict[str, float | None]]]:
    """Both conventions from per-step scores of the N scored samples.

    Args:
        l2: (N, 6) metres. collision: (N, 6) bool or 0/1 counted collisions.

    Returns:
        ``{"vad": {"l2": {"1s","2s","3s","avg"}, "collision": {...}}, "uniad": {...}}``; collision in percent;
        every value None when N == 0.
    """
    l2 = np.asarray(l2, np.float64).reshape(-1, FUTURE_STEPS)
    col = np.asarray(collision, np.float64).reshape(-1, FUTURE_STEPS) * 100.0
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for conv in CONVENTIONS:
        metrics: dict[str, dict[str, float | None]] = {}
        for name, values in (("l2", l2), ("collision", col)):
            if values.shape[0] == 0:
                metrics[name] = {**{_horizon_key(k): None for k in HORIZONS_S}, "avg": None}
                continue
            per_h: dict[str, float | None] = {}
            for k in HORIZONS_S:
                last = k * _STEPS_PER_SECOND  # steps 1..2k, i.e. indices 0..2k-1
                if conv == "vad":
                    per_h[_horizon_key(k)] = float(values[:, :last].mean())
                else:
                    per_h[_horizon_key(k)] = float(values[:, last - 1].mean())
            per_h["avg"] = float(np.mean([per_h[_horizon_key(k)] for k in HORIZONS_S]))
            metrics[name] = per_h
        out[conv] = metrics
    return out


def formula_text(occupancy_config: OccupancyConfig = OccupancyConfig()) -> str:
    """The exact definitions behind a report, for its ``formula`` field."""
    return (
        "Scored samples: only those whose GT ego future has all 6 steps (t=1..6 at 0.5 s, 0.5..3.0 s). "
        "Per step: L2[t] = Euclidean distance (m) between predicted and GT ego positions in the current ego frame "
        "(x forward, y left). Collision[t] = 1 if the ego footprint "
        f"({EGO_WIDTH_M} m wide x {EGO_LENGTH_M} m long, centre {EGO_FOOTPRINT_FORWARD_OFFSET_M} m ahead of the "
        "waypoint, axes kept aligned with the current ego heading and translated to the waypoint, rasterised as in "
        "VAD's metric_stp3.py) covers any occupied cell of the GT occupancy at t "
        f"({GRID_SIZE}x{GRID_SIZE} cells of {GRID_RESOLUTION_M} m over [-{GRID_HALF_EXTENT_M:g}, "
        f"{GRID_HALF_EXTENT_M:g}] m; union of {occupancy_config.describe()}, placed at their GT future centre and "
        "yaw at t, rasterised with cv2.fillPoly), except that a step where the footprint at the GT waypoint itself "
        "collides counts as 0 and stays in the denominator. "
        "VAD/ST-P3 convention (cumulative): L2@k s = mean over samples of the mean of L2[t] over t=1..2k; "
        "Col@k s = 100 * mean over samples of the mean of Collision[t] over t=1..2k. "
        "UniAD convention (per-timestep): L2@k s = mean over samples of L2[2k]; Col@k s = 100 * mean over samples "
        "of Collision[2k]. In both, avg = mean of the 1 s, 2 s and 3 s values; L2 in metres, collision in percent. "
        "Splits: long-tail splits (overtake, three_point_turn, resume_from_stop) are the samples tagged so (synthetic "
        "scenario tags or real-nuScenes token lists); 'turning' is the samples whose GT driving command is not "
        f"straight (lateral offset of the last GT waypoint, 3 s, beyond +/-{COMMAND_LATERAL_THRESHOLD_M:g} m, VAD's "
        "command rule)."
    )


def sample_splits(sample: DrivingSample) -> list[str]:
    """Report splits a sample belongs to: its long-tail tags, plus ``turning`` when its GT command is not straight.

    The command is recomputed from the GT future (``driving_command``: lateral offset of the last valid waypoint
    beyond +/- COMMAND_LATERAL_THRESHOLD_M), so the split never depends on how a planner used the command.
    """
    splits = [s for s in LONGTAIL_SPLITS if s in sample.tags]
    if driving_command(sample.ego_future, sample.ego_future_mask) != COMMAND_STRAIGHT:
        splits.append(TURNING_SPLIT)
    return splits


class PlanningMetricAccumulator:
    """Streaming planning metrics: add samples one at a time (e.g. from a ROS evaluator node), then ``result()``.

    Args:
        occupancy_config: which GT agents occupy space (used by :meth:`add_sample` and in the formula).
        split_names: splits always present in the report (with 0 samples when none was added); any other split
            name passed to :meth:`add` is reported too.
    """

    def __init__(
        self,
        occupancy_config: OccupancyConfig = OccupancyConfig(),
        split_names: Sequence[str] = REPORT_SPLITS,
    ):
        self.occupancy_config = occupancy_config
        self.split_names = list(split_names)
        self.tokens: list[str] = []
        self._l2: list[np.ndarray] = []
        self._collision: list[np.ndarray] = []
        self._gt_collision: list[np.ndarray] = []
        self._splits: list[tuple[str, ...]] = []
        self.num_skipped_incomplete = 0

    @property
    def num_samples(self) -> int:
        return len(self._l2)

    def add(
        self,
        pred: np.ndarray,
        gt_future: np.ndarray,
        gt_future_mask: np.ndarray,
        occupancy: np.ndarray,
        *,
        token: str = "",
        splits: Iterable[str] = (),
    ) -> bool:
        """Score one sample; return False (and count it) when its GT future is incomplete.

        Args:
            pred: (6, 2) predicted waypoints, current ego frame.
            gt_future: (6, 2) GT ego future. gt_future_mask: (6,) bool.
            occupancy: (6, GRID_SIZE, GRID_SIZE) bool GT occupancy of the sample.
            token: sample token, kept for per-sample inspection.
            splits: report splits this sample belongs to (see :func:`sample_splits`).
        """
        scores = score_batch(
            np.asarray(pred)[None],
            np.asarray(gt_future)[None],
            np.asarray(gt_future_mask)[None],
            np.asarray(occupancy)[None],
        )
        if not scores["valid"][0]:
            self.num_skipped_incomplete += 1
            return False
        self.tokens.append(token)
        self._l2.append(scores["l2"][0])
        self._collision.append(scores["collision"][0])
        self._gt_collision.append(scores["gt_collision"][0])
        self._splits.append(tuple(splits))
        return True

    def add_sample(self, sample: DrivingSample, pred: np.ndarray, occupancy: np.ndarray | None = None) -> bool:
        """Score ``pred`` (6, 2) against a DrivingSample; ``occupancy`` may be passed to share it between methods."""
        if occupancy is None:
            if not sample.has_full_future:  # skip before paying for the rasterisation
                self.num_skipped_incomplete += 1
                return False
            occupancy = build_occupancy(sample.agents, self.occupancy_config)
        return self.add(
            pred,
            sample.ego_future,
            sample.ego_future_mask,
            occupancy,
            token=sample.token,
            splits=sample_splits(sample),
        )

    def per_sample(self) -> dict[str, np.ndarray]:
        """Per-sample scores of the scored samples: ``l2`` (N, 6), ``collision`` (N, 6), ``gt_collision`` (N, 6)."""
        shape = (0, FUTURE_STEPS)
        return {
            "l2": np.stack(self._l2) if self._l2 else np.zeros(shape),
            "collision": np.stack(self._collision) if self._collision else np.zeros(shape, bool),
            "gt_collision": np.stack(self._gt_collision) if self._gt_collision else np.zeros(shape, bool),
        }

    def result(self) -> dict:
        """The report of docs/design.md (Evaluation protocol): overall, per split (with counts), and the formula."""
        scores = self.per_sample()
        report: dict = {"num_samples": self.num_samples, **summarize(scores["l2"], scores["collision"])}
        names = list(self.split_names) + sorted({s for ss in self._splits for s in ss} - set(self.split_names))
        report["splits"] = {}
        for name in names:
            member = np.array([name in ss for ss in self._splits], bool)
            report["splits"][name] = {
                "num_samples": int(member.sum()),
                **summarize(scores["l2"][member], scores["collision"][member]),
            }
        report["num_skipped_incomplete_future"] = self.num_skipped_incomplete
        report["num_gt_collision_steps"] = int(scores["gt_collision"].sum())
        report["formula"] = formula_text(self.occupancy_config)
        return report


def planning_metrics_batch(
    pred: np.ndarray,
    gt: np.ndarray,
    gt_mask: np.ndarray,
    occupancy: np.ndarray,
    occupancy_config: OccupancyConfig = OccupancyConfig(),
) -> dict:
    """One-shot report (no splits) for B samples at once; shapes as :func:`score_batch`."""
    scores = score_batch(pred, gt, gt_mask, occupancy)
    valid = scores["valid"]
    return {
        "num_samples": int(valid.sum()),
        **summarize(scores["l2"][valid], scores["collision"][valid]),
        "num_skipped_incomplete_future": int((~valid).sum()),
        "num_gt_collision_steps": int(scores["gt_collision"][valid].sum()),
        "formula": formula_text(occupancy_config),
    }


# ----------------------------------------------------------------------------------------------------- table


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(reports: Mapping[str, Mapping], title: str = "") -> str:
    """Plain-text table, one row per method and convention, columns L2 (m) and Col (%) at 1/2/3 s and avg.

    Args:
        reports: method name -> a report or split section (keys ``num_samples``, ``vad``, ``uniad``).
        title: printed above the table.
    """
    cols = [f"{k}s" for k in HORIZONS_S] + ["avg"]
    header = ["method", "conv", "N"] + [f"L2 {c}" for c in cols] + [f"Col% {c}" for c in cols]
    rows: list[list[str]] = []
    for method, rep in reports.items():
        for conv in CONVENTIONS:
            rows.append(
                [method, conv, str(rep.get("num_samples", 0))]
                + [_fmt(rep[conv]["l2"][c], 3) for c in cols]
                + [_fmt(rep[conv]["collision"][c], 2) for c in cols]
            )
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [title] if title else []
    out += [line(header), "-" * len(line(header))]
    out += [line(r) for r in rows]
    return "\n".join(out)


__all__ = [
    "CONVENTIONS",
    "HORIZONS_S",
    "LONGTAIL_SPLITS",
    "PlanningMetricAccumulator",
    "REPORT_SPLITS",
    "TURNING_SPLIT",
    "footprint_cells",
    "footprint_collisions",
    "format_table",
    "formula_text",
    "per_step_l2",
    "planning_metrics_batch",
    "sample_splits",
    "score_batch",
    "summarize",
]
