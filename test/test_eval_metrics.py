"""Planning metrics on hand-computed cases, both conventions (docs/design.md, Evaluation protocol; issue 3 section 5).

Expected numbers are worked out in the comments. Geometry reminder (VAD's footprint, module docstring of
planning_metrics): for a waypoint (x, y) the footprint covers grid points x' in [x - 1.5, x + 2.0] and
y' in [y - 0.5, y + 1.0] (0.5 m steps), i.e. the 1.85 x 4.084 m box 0.5 m ahead, on VAD's half-cell-shifted grid.
"""

from __future__ import annotations

import numpy as np
import pytest

from dima_core.eval.occupancy import OccupancyConfig, build_occupancy, world_to_grid
from dima_core.eval.planning_metrics import (
    PlanningMetricAccumulator,
    footprint_cells,
    footprint_collisions,
    format_table,
    planning_metrics_batch,
    sample_splits,
    score_batch,
    summarize,
)
from eval_fixtures import empty_occupancy, make_agents, make_sample, occupy, straight

FULL = np.ones(6, bool)


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-6)  # samples store float32 positions


# ------------------------------------------------------------------------------------------------------------ L2


def test_straight_line_l2_both_conventions():
    gt = straight(5.0)  # x = 2.5, 5, ..., 15; y = 0
    pred = gt.copy()
    pred[:, 1] = 0.1 * np.arange(1, 7)  # lateral drift: per-step L2 = 0.1, 0.2, ..., 0.6 m
    acc = PlanningMetricAccumulator()
    assert acc.add(pred, gt, FULL, empty_occupancy(), token="a")
    rep = acc.result()
    assert rep["num_samples"] == 1
    # VAD: mean over steps 1..2k -> 1 s: (0.1+0.2)/2 = 0.15; 2 s: (0.1+..+0.4)/4 = 0.25; 3 s: 2.1/6 = 0.35.
    vad = rep["vad"]["l2"]
    assert (vad["1s"], vad["2s"], vad["3s"]) == (approx(0.15), approx(0.25), approx(0.35))
    assert vad["avg"] == approx((0.15 + 0.25 + 0.35) / 3)
    # UniAD: value at step 2k -> 0.2, 0.4, 0.6; avg 0.4.
    uni = rep["uniad"]["l2"]
    assert (uni["1s"], uni["2s"], uni["3s"], uni["avg"]) == (approx(0.2), approx(0.4), approx(0.6), approx(0.4))
    # No agents: no collisions in either convention.
    for conv in ("vad", "uniad"):
        assert all(v == 0.0 for v in rep[conv]["collision"].values())


def test_l2_is_averaged_over_samples():
    gt = straight(5.0)
    drift = gt.copy()
    drift[:, 1] = 0.1 * np.arange(1, 7)
    acc = PlanningMetricAccumulator()
    acc.add(drift, gt, FULL, empty_occupancy())
    acc.add(gt, gt, FULL, empty_occupancy())  # perfect: L2 0 everywhere
    rep = acc.result()
    assert rep["num_samples"] == 2
    assert rep["vad"]["l2"]["3s"] == approx(0.35 / 2)
    assert rep["uniad"]["l2"]["1s"] == approx(0.2 / 2)
    # A longitudinal error: pred 1 m ahead at every step -> L2 = 1 at every step, both conventions.
    acc2 = PlanningMetricAccumulator()
    acc2.add(gt + np.array([1.0, 0.0]), gt, FULL, empty_occupancy())
    r2 = acc2.result()
    for conv in ("vad", "uniad"):
        assert all(v == approx(1.0) for v in r2[conv]["l2"].values())


# ------------------------------------------------------------------------------------------------------------ collision


def test_known_collision_at_step_3_through_agent_boxes():
    # A car crossing from left to right (yaw -pi/2, 4 m long along y, 2 m wide along x) at x = 7.5; its centre
    # y at steps 1..6 is 8, 4, 0, -4, -8, -12, so it is on the ego's straight path only at step 3 (t = 1.5 s).
    car_y = 4.0 * (3 - np.arange(1, 7))
    car = make_agents(
        boxes=[[7.5, 12.0, 0.0, 2.0, 4.0, 1.5, -np.pi / 2]],
        future=[np.stack([np.full(6, 7.5), car_y], axis=-1)],
    )
    pred = straight(5.0)  # x = 2.5 k: step 3 at x = 7.5, footprint x' in [6, 9.5], y' in [-0.5, 1]
    gt = straight(5.0, y=-20.0)  # the GT drives far to the right: it never meets the car
    sample = make_sample("s", gt, agents=car)
    occ = build_occupancy(sample.agents)
    scores = score_batch(pred[None], gt[None], FULL[None], occ[None])
    assert scores["collision"][0].tolist() == [False, False, True, False, False, False]
    assert not scores["gt_collision"].any()

    acc = PlanningMetricAccumulator()
    assert acc.add_sample(sample, pred)
    rep = acc.result()
    col = rep["vad"]["collision"]
    # VAD: 1 s averages steps 1-2 (0 %), 2 s steps 1-4 (1/4 = 25 %), 3 s steps 1-6 (1/6 = 16.67 %).
    assert (col["1s"], col["2s"], col["3s"]) == (approx(0.0), approx(25.0), approx(100.0 / 6))
    assert col["avg"] == approx((0.0 + 25.0 + 100.0 / 6) / 3)
    # UniAD reads steps 2, 4, 6 only: a collision at step 3 (1.5 s) is invisible to it.
    assert all(v == approx(0.0) for v in rep["uniad"]["collision"].values())


def test_known_collision_at_step_4_both_conventions():
    occ = empty_occupancy()
    occupy(occ, 3, 10.5, 0.0)  # step 4 (index 3): pred at x = 10 covers x' in [8.5, 12]
    pred, gt = straight(5.0), straight(5.0, y=-20.0)
    rep = planning_metrics_batch(pred[None], gt[None], FULL[None], occ[None])
    vad, uni = rep["vad"]["collision"], rep["uniad"]["collision"]
    assert (vad["1s"], vad["2s"], vad["3s"]) == (approx(0.0), approx(25.0), approx(100.0 / 6))
    # UniAD: step 2 -> 0, step 4 -> 100 %, step 6 -> 0; avg 33.3 %.
    assert (uni["1s"], uni["2s"], uni["3s"], uni["avg"]) == (approx(0.0), approx(100.0), approx(0.0), approx(100 / 3))


def test_gt_colliding_step_never_counts_but_stays_in_denominator():
    pred = straight(5.0)
    gt = straight(5.0, y=0.0)
    # Sample A: an obstacle on both the predicted and GT paths at step 2 (x = 5): the GT "collides" there, so the
    # predicted collision at step 2 does not count. Another obstacle at step 3 hits only the prediction
    # (GT shifted 5 m to the left at step 3).
    gt_a = gt.copy()
    gt_a[2, 1] = 5.0
    occ_a = empty_occupancy()
    occupy(occ_a, 1, 5.5, 0.0)
    occupy(occ_a, 2, 8.0, 0.0)
    # Sample B: no obstacle; prediction collision-free.
    occ_b = empty_occupancy()
    acc = PlanningMetricAccumulator()
    acc.add(pred, gt_a, FULL, occ_a, token="A")
    acc.add(pred, gt, FULL, occ_b, token="B")
    per = acc.per_sample()
    assert per["gt_collision"][0].tolist() == [False, True, False, False, False, False]
    assert per["collision"][0].tolist() == [False, False, True, False, False, False]
    rep = acc.result()
    assert rep["num_samples"] == 2  # the GT-colliding sample is scored, not dropped
    assert rep["num_gt_collision_steps"] == 1
    vad = rep["vad"]["collision"]
    # VAD 1 s: steps 1-2 of both samples, the GT-colliding step counting 0: 0 / 4 = 0 %.
    # VAD 2 s: one collision (A, step 3) over 2 samples x 4 steps = 12.5 %; 3 s: 1 / 12 = 8.33 %.
    assert (vad["1s"], vad["2s"], vad["3s"]) == (approx(0.0), approx(12.5), approx(100 / 12))

    # UniAD at step 2: A's prediction hits the obstacle but the GT does too -> 0; B: 0. Denominator 2 samples.
    # Compare with an unmasked case: same obstacle, GT elsewhere -> counts 1 of 2 samples = 50 %.
    assert rep["uniad"]["collision"]["1s"] == approx(0.0)
    acc2 = PlanningMetricAccumulator()
    acc2.add(pred, straight(5.0, y=-20.0), FULL, occ_a)
    acc2.add(pred, gt, FULL, occ_b)
    assert acc2.result()["uniad"]["collision"]["1s"] == approx(50.0)


def test_incomplete_future_is_skipped():
    gt = straight(5.0)
    mask = FULL.copy()
    mask[5] = False  # the scene ends before 3 s
    far_off = gt + 100.0
    acc = PlanningMetricAccumulator()
    assert acc.add(gt, gt, FULL, empty_occupancy())
    assert not acc.add(far_off, gt, mask, empty_occupancy())
    rep = acc.result()
    assert rep["num_samples"] == 1 and rep["num_skipped_incomplete_future"] == 1
    assert rep["vad"]["l2"]["3s"] == approx(0.0)  # the skipped sample left no trace
    # Same through a DrivingSample (skipped before building the occupancy) and through the batch function.
    acc2 = PlanningMetricAccumulator()
    assert not acc2.add_sample(make_sample("x", gt, ego_future_mask=mask), far_off)
    assert acc2.result()["num_samples"] == 0 and acc2.result()["vad"]["l2"]["1s"] is None
    batch = planning_metrics_batch(
        np.stack([gt, far_off]), np.stack([gt, gt]), np.stack([FULL, mask]), np.stack([empty_occupancy()] * 2)
    )
    assert batch["num_samples"] == 1 and batch["vad"]["l2"]["avg"] == approx(0.0)


# ------------------------------------------------------------------------------------------------------------ footprint


def test_footprint_shape_and_vad_cells():
    rows, cols = footprint_cells(np.zeros((1, 2)))
    # VAD's template: 8 rows x 4 columns = 32 cells; at the origin rows 96..103 (x' = 2.0 .. -1.5 m) and
    # columns 98..101 (y' = 1.0 .. -0.5 m).
    assert rows.shape == (1, 32)
    assert sorted(set(rows[0].tolist())) == list(range(96, 104))
    assert sorted(set(cols[0].tolist())) == list(range(98, 102))


def test_footprint_stays_aligned_with_current_heading():
    # A left turn ending heading +y: the footprint is translated to each waypoint, never rotated.
    turn = np.array([[2.0, 0.0], [4.0, 0.5], [6.0, 2.0], [7.0, 4.0], [7.5, 6.0], [7.5, 10.0]])
    rows, cols = footprint_cells(turn)
    r0, c0 = footprint_cells(np.zeros((1, 2)))
    for t in range(6):
        # Every waypoint gets the same 8 x 4 block, shifted by whole cells.
        assert len(set(rows[t].tolist())) == 8 and len(set(cols[t].tolist())) == 4
        assert np.ptp(rows[t] - r0[0]) == 0 and np.ptp(cols[t] - c0[0]) == 0
    assert (rows[5] - r0[0])[0] == -15 and (cols[5] - c0[0])[0] == -20  # (7.5, 10) m = (-15, -20) cells

    # Obstacles that tell aligned from rotated apart, at the last waypoint (7.5, 10) heading +y:
    # - 1.5 m further along +y: inside a box rotated to the heading (it reaches 10 + 2.54), outside the aligned one
    #   (y' <= 11.0);
    # - 1.5 m further along +x: inside the aligned box (x' <= 9.5), outside a rotated one (half-width 0.925 m).
    occ = empty_occupancy()
    occupy(occ, 5, 7.5, 11.5)
    assert not footprint_collisions(turn, occ)[5]
    occ = empty_occupancy()
    occupy(occ, 5, 9.0, 10.0)
    assert footprint_collisions(turn, occ)[5]


def test_footprint_leaving_the_grid_reads_the_border():
    # VAD clips footprint indices into the grid: a waypoint 60 m ahead checks row 0.
    occ = empty_occupancy()
    occ[5, 0, 98:102] = True
    traj = straight(5.0)
    traj[5] = [60.0, 0.0]
    assert footprint_collisions(traj, occ).tolist() == [False] * 5 + [True]


# ------------------------------------------------------------------------------------------------------------ occupancy


def test_occupancy_rasterisation_and_filters():
    zeros = np.zeros((6, 2))
    # Car 4 m long, 2 m wide at (10, 0), yaw 0: corners x in {8, 12}, y in {-1, 1} -> rows (50-12)/0.5 = 76 ..
    # (50-8)/0.5 = 84, columns (50-1)/0.5 = 98 .. 102; fillPoly includes the edges: 9 x 5 = 45 cells.
    car = make_agents([[10.0, 0.0, 0.0, 2.0, 4.0, 1.5, 0.0]], [zeros + [10.0, 0.0]])
    occ = build_occupancy(car)
    assert occ.shape == (6, 200, 200) and occ.dtype == bool
    assert occ[0].sum() == 45
    assert occ[0, 76:85, 98:103].all()
    r, c = world_to_grid(np.array([10.0, 0.0])).astype(int)
    assert (r, c) == (80, 100)

    # Rotated by 90 degrees: 4 m along y -> 5 rows x 9 columns.
    car_rot = make_agents([[10.0, 0.0, 0.0, 2.0, 4.0, 1.5, np.pi / 2]], [zeros + [10.0, 0.0]])
    occ_rot = build_occupancy(car_rot)
    assert occ_rot[0].sum() == 45 and occ_rot[0, 78:83, 96:105].all()

    # Future mask: the agent occupies only the steps where its future exists.
    mask = np.array([True, False, True, False, False, False])
    occ_m = build_occupancy(make_agents([[10.0, 0.0, 0.0, 2.0, 4.0, 1.5, 0.0]], [zeros + [10, 0]], future_mask=[mask]))
    assert [bool(occ_m[t].any()) for t in range(6)] == mask.tolist()

    # Filters (VAD defaults): traffic cones / barriers, agents without lidar points, and agents whose current
    # centre is outside x in (-30, 30), y in (-15, 15) do not occupy.
    base = [10.0, 0.0, 0.0, 2.0, 4.0, 1.5, 0.0]
    assert not build_occupancy(make_agents([base], [zeros + [10, 0]], labels=["traffic_cone"])).any()
    assert not build_occupancy(make_agents([base], [zeros + [10, 0]], labels=["barrier"])).any()
    assert build_occupancy(make_agents([base], [zeros + [10, 0]], labels=["pedestrian"])).any()
    assert build_occupancy(make_agents([base], [zeros + [10, 0]], labels=["bicycle"])).any()
    assert not build_occupancy(make_agents([base], [zeros + [10, 0]], num_lidar_points=[0])).any()
    far = [35.0, 0.0, 0.0, 2.0, 4.0, 1.5, 0.0]
    assert not build_occupancy(make_agents([far], [zeros + [10, 0]])).any()
    wide = OccupancyConfig(x_range=None, y_range=None, min_lidar_points=0)
    assert build_occupancy(make_agents([far], [zeros + [10, 0]], num_lidar_points=[0]), wide).any()


# ------------------------------------------------------------------------------------------------------------ report


def test_report_schema_splits_and_table():
    gt_turn = np.stack([np.linspace(2, 10, 6), np.linspace(0.5, 4.0, 6)], axis=-1)  # ends 4 m left: turning
    acc = PlanningMetricAccumulator()
    s1 = make_sample("t1", straight(5.0), tags=["overtake"])
    s2 = make_sample("t2", gt_turn, tags=["resume_from_stop", "some_other_tag"])
    assert sample_splits(s1) == ["overtake"]
    assert sample_splits(s2) == ["resume_from_stop", "turning"]
    acc.add_sample(s1, straight(5.0) + [0.0, 1.0])  # L2 = 1 at every step
    acc.add_sample(s2, gt_turn)
    rep = acc.result()
    assert set(rep) >= {"num_samples", "vad", "uniad", "splits", "formula"}
    for conv in ("vad", "uniad"):
        assert set(rep[conv]) == {"l2", "collision"}
        assert set(rep[conv]["l2"]) == {"1s", "2s", "3s", "avg"} == set(rep[conv]["collision"])
    assert set(rep["splits"]) == {"overtake", "three_point_turn", "resume_from_stop", "turning"}
    assert rep["splits"]["overtake"]["num_samples"] == 1
    assert rep["splits"]["overtake"]["vad"]["l2"]["avg"] == approx(1.0)
    assert rep["splits"]["turning"]["num_samples"] == 1
    assert rep["splits"]["turning"]["uniad"]["l2"]["3s"] == approx(0.0)
    assert rep["splits"]["three_point_turn"]["num_samples"] == 0
    assert rep["splits"]["three_point_turn"]["vad"]["l2"]["1s"] is None
    assert rep["vad"]["l2"]["avg"] == approx(0.5)
    assert "mean of L2[t] over t=1..2k" in rep["formula"] and "L2[2k]" in rep["formula"]
    assert "1.85 m wide x 4.084 m long" in rep["formula"]

    table = format_table({"mine": rep, "other": rep["splits"]["three_point_turn"]}, "overall")
    lines = table.splitlines()
    assert lines[0] == "overall" and "L2 1s" in lines[1] and "Col% avg" in lines[1]
    assert sum(line.startswith("mine") for line in lines) == 2  # one row per convention
    assert any(line.startswith("other") and " - " in line for line in lines)


def test_summarize_matches_batch_and_validates_shapes():
    rng = np.random.default_rng(0)
    l2 = rng.uniform(0, 2, (5, 6))
    col = rng.uniform(0, 1, (5, 6)) > 0.7
    s = summarize(l2, col)
    assert s["vad"]["l2"]["2s"] == approx(l2[:, :4].mean())
    assert s["uniad"]["collision"]["3s"] == approx(100 * col[:, 5].mean())
    with pytest.raises(ValueError, match="pred must have shape"):
        score_batch(np.zeros((1, 5, 2)), np.zeros((1, 6, 2)), np.ones((1, 6), bool), empty_occupancy()[None])
    with pytest.raises(ValueError, match="NaN"):
        score_batch(np.full((1, 6, 2), np.nan), np.zeros((1, 6, 2)), np.ones((1, 6), bool), empty_occupancy()[None])
