"""Scoring several planners on the same samples, with the baselines, into one report and one table.

This is the library behind both modes of ``dima eval`` (``--results``: the trajectories of a results file;
``--checkpoint``: the planner's batched inference, :mod:`dima_core.eval.planner_inference`, each looked up by sample
token), behind ``dima bench planner`` and ``dima bench distill`` (``benchmarks/``), and behind ``dima sim fit-admlp``
(:func:`fit_admlp`).

A *planner* is a callable ``DrivingSample -> (6, 2)`` positions in the sample's current ego frame. Every planner is
scored on exactly the same samples with the same GT occupancy (built once per sample), so rows of one table are
comparable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from dima_core.data.sample import DrivingSample
from dima_core.eval.baselines import ADMLPBaseline, ADMLPConfig, ConstantVelocityBaseline
from dima_core.eval.occupancy import OccupancyConfig, build_occupancy
from dima_core.eval.planning_metrics import REPORT_SPLITS, PlanningMetricAccumulator, format_table

logger = logging.getLogger(__name__)

Planner = Callable[[DrivingSample], np.ndarray]


def evaluate_planners(
    samples: Iterable[DrivingSample],
    planners: Mapping[str, Planner],
    occupancy_config: OccupancyConfig = OccupancyConfig(),
) -> dict[str, dict]:
    """Score every planner on every sample (samples without a full GT future are counted as skipped).

    Args:
        samples: the scored keyframes; the GT occupancy of each is built once and shared by every planner.
        planners: method name -> planner (``DrivingSample -> (6, 2)`` ego-frame positions at 0.5 .. 3.0 s).
        occupancy_config: the GT occupancy grid and the ego footprint of the collision metric.

    Returns:
        method name -> report (:meth:`PlanningMetricAccumulator.result`: ``num_samples``, ``vad``, ``uniad``,
        ``splits``, the skip and GT-collision counters, ``formula``).
    """
    accumulators = {name: PlanningMetricAccumulator(occupancy_config) for name in planners}
    for sample in samples:
        if not sample.has_full_future:
            for acc in accumulators.values():
                acc.num_skipped_incomplete += 1
            continue
        occupancy = build_occupancy(sample.agents, occupancy_config)  # shared by all planners
        for name, planner in planners.items():
            pred = np.asarray(planner(sample), np.float64)
            accumulators[name].add_sample(sample, pred, occupancy)
    return {name: acc.result() for name, acc in accumulators.items()}


def fit_admlp(train_samples: Iterable[DrivingSample], config: ADMLPConfig = ADMLPConfig()) -> ADMLPBaseline | None:
    """AD-MLP trained on the given samples, or None (with a warning) when none has a full GT future."""
    usable = [s for s in train_samples if s.has_full_future]
    if not usable:
        logger.warning("AD-MLP baseline skipped: the training split has no sample with a full 6-step GT future")
        return None
    logger.info("fitting the AD-MLP baseline on %d training samples", len(usable))
    return ADMLPBaseline.fit_samples(usable, config)


def baseline_planners(admlp: ADMLPBaseline | None = None) -> dict[str, Planner]:
    """The baselines every table carries: constant velocity (ego status), and AD-MLP when given."""
    cv = ConstantVelocityBaseline()
    planners: dict[str, Planner] = {cv.name: cv.plan}
    if admlp is not None:
        planners[admlp.name] = admlp.plan
    return planners


def combine_reports(primary: str, reports: Mapping[str, dict], **extra: object) -> dict:
    """The JSON report: the primary method's report at the top level (the schema of docs/design.md, Evaluation
    protocol), the other methods under ``"baselines"`` (same schema, without the repeated formula), plus ``extra``
    keys."""
    out = dict(reports[primary])
    out["method"] = primary
    formula = out.pop("formula")
    out["baselines"] = {
        name: {k: v for k, v in rep.items() if k != "formula"} for name, rep in reports.items() if name != primary
    }
    out.update(extra)
    out["formula"] = formula  # last, so the long text does not hide the numbers when reading the file
    return out


def report_tables(reports: Mapping[str, dict], splits: Iterable[str] = REPORT_SPLITS) -> str:
    """Overall table plus one table per split, all methods as rows."""
    blocks = [format_table(reports, "overall")]
    for split in splits:
        sections = {name: rep["splits"][split] for name, rep in reports.items() if split in rep.get("splits", {})}
        if sections:
            blocks.append(format_table(sections, f"split: {split}"))
    return "\n\n".join(blocks)


__all__ = ["Planner", "baseline_planners", "combine_reports", "evaluate_planners", "fit_admlp", "report_tables"]
