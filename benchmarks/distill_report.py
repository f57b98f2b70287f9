"""The report of ``dima bench distill``: merging per-seed reports and the markdown section of docs/benchmarks.md.

A report (``report.json``) holds, per arm name, one entry per seed in the order of ``args.seeds``:

- ``results``: the vision-only planning metrics (``group/convention/metric``, :func:`teacher_quality.planning_metrics`);
- ``costs``: the arm's cost (:func:`distill_costs.arm_cost`: wall time, steps, planner updates, samples, FLOPs);
- ``teacher``: the teacher's quality at the handover and at the end (DiMA arms whose teacher was evaluated);
- ``closed_loop``: the arm's closed-loop summary, overall and per scenario (:mod:`benchmarks.distill_closed_loop`),
  None when the run was open loop only;

and ``references`` (the constant-velocity plan and the scene-blind VQA answers on the same split). Reports written
before the compute-matched protocol have ``results`` only; they merge with each other but not with new ones (the
protocol arguments differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.distill_protocol import ARM_A
from benchmarks.distill_stats import format_mean_std, mean_std, paired

SECTION_TITLE = "## Distillation (dima bench distill)"
# Arguments that define the protocol: reports that differ in any of them cannot share a table.
PROTOCOL_ARGS = (
    "dataroot",
    "version",
    "stage1_config",
    "stage2_config",
    "model_config",
    "epochs",
    "stage2_epochs",
    "rungs",
    "train_split",
    "val_split",
    "batch_size",
    "max_steps",
    "teacher_warmup",
    "warmup_terms",
    "distill_ramp",
    "distill_loss",
    "planner_lr",
    "planner_lr_multiplier",
    "vqa_frames",
    "init",
    "stage2_steps",
    "teacher_plan_frames",
    "closed_loop_episodes",
    "closed_loop_seed",
    "sim_config",
    "closed_loop_scenarios",
)
_OVERALL = (("vad", "l2"), ("vad", "collision"), ("uniad", "l2"), ("uniad", "collision"))


def merge_reports(reports: list[dict], key: str = "results") -> dict[str, list[Any]]:
    """Concatenate the per-seed entries ``key`` (``results``, ``costs`` or ``teacher``) of several runs of the same
    protocol (a seed may appear once only)."""
    if not reports:
        raise ValueError("no reports to merge")
    first = reports[0]["args"]
    seen: set[int] = set()
    merged: dict[str, list[Any]] = {}
    for i, rep in enumerate(reports):
        diff = [k for k in PROTOCOL_ARGS if rep["args"].get(k) != first.get(k)]
        if diff:
            raise ValueError(
                f"report {i} ran a different protocol than report 0: "
                + ", ".join(f"{k} {rep['args'].get(k)!r} != {first.get(k)!r}" for k in diff)
            )
        dup = seen & set(rep["args"]["seeds"])
        if dup:
            raise ValueError(f"report {i} repeats seeds {sorted(dup)}")
        seen |= set(rep["args"]["seeds"])
        n = len(rep["args"]["seeds"])
        for name in rep["results"]:
            entries = rep.get(key, {}).get(name)
            merged.setdefault(name, []).extend(entries if entries is not None else [None] * n)
    return merged


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _split_groups(results: dict[str, list[dict | None]]) -> list[str]:
    # Splits without a single val sample (a tag the val scenes happen not to carry) would only add empty columns.
    runs = [r for rs in results.values() for r in rs if r]
    return sorted(
        g
        for g in {k.split("/")[0] for r in runs for k in r} - {"overall"}
        if any((r.get(f"{g}/n") or 0) > 0 for r in runs)
    )


def metrics_table(results: dict[str, list[dict | None]]) -> str:
    """Mean ± std over seeds of every arm: overall in both conventions, and L2 / collision (VAD) per split."""
    groups = _split_groups(results)
    header = ["method", "L2 VAD (m)", "Col VAD (%)", "L2 UniAD (m)", "Col UniAD (%)"]
    header += [f"{g} L2 VAD / Col VAD" for g in groups]
    lines = [_row(header), "|" + "---|" * len(header)]
    for name, runs in results.items():
        runs = [r or {} for r in runs]
        cells = [name] + [format_mean_std([r.get(f"overall/{c}/{m}") for r in runs]) for c, m in _OVERALL]
        for g in groups:
            n = runs[0].get(f"{g}/n") if runs else None
            cells.append(
                f"{format_mean_std([r.get(f'{g}/vad/l2') for r in runs])} / "
                f"{format_mean_std([r.get(f'{g}/vad/collision') for r in runs])} (n={int(n or 0)})"
            )
        lines.append(_row(cells))
    return "\n".join(lines)


def paired_table(results: dict[str, list[dict | None]], seeds: list[int], baseline: str = ARM_A) -> str:
    """Every other arm minus ``baseline``, seed by seed (:func:`distill_stats.paired`); empty without the baseline."""
    if baseline not in results:
        return ""
    groups = _split_groups(results)
    header = [
        "method − " + baseline.split(")")[0] + ")",
        "Δ L2 VAD (m)",
        "Δ Col VAD (%)",
        "Δ L2 UniAD (m)",
        "Δ Col UniAD (%)",
    ] + [f"Δ {g} L2 VAD" for g in groups]
    base = [r or {} for r in results[baseline]]
    lines = [_row(header), "|" + "---|" * len(header)]
    keys = [f"overall/{c}/{m}" for c, m in _OVERALL] + [f"{g}/vad/l2" for g in groups]
    for name, runs in results.items():
        if name == baseline:
            continue
        runs = [r or {} for r in runs]
        cells = [name] + [paired([r.get(k) for r in runs], [b.get(k) for b in base], seeds).format() for k in keys]
        lines.append(_row(cells))
    return "\n".join(lines)


def cost_table(costs: dict[str, list[dict | None]]) -> str:
    """Mean over seeds of each arm's cost (wall time ± std)."""
    header = ["method", "wall (min)", "planner updates", "planner samples", "all steps", "FLOPs (estimate)"]
    lines = [_row(header), "|" + "---|" * len(header)]
    for name, entries in costs.items():
        entries = [e for e in entries if e]
        if not entries:
            continue

        def mean(key: str, entries: list[dict] = entries) -> float | None:
            return mean_std([e.get(key) for e in entries])[0]

        flops = mean("flops")
        lines.append(
            _row(
                [
                    name,
                    format_mean_std([e["wall_s"] / 60 for e in entries], 1),
                    f"{mean('planner_steps'):.0f}",
                    f"{mean('planner_samples'):.0f}",
                    f"{mean('steps'):.0f}",
                    f"{flops:.3g}" if flops else "-",
                ]
            )
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def teacher_table(teacher: dict[str, list[dict | None]], references: dict[str, Any]) -> str:
    """The teacher's MLLM-only planning and VQA at the handover and the end (mean ± std), with the scene-blind
    references."""
    header = [
        "teacher of",
        "when",
        "MLLM L2 VAD (m)",
        "MLLM Col VAD (%)",
        "VQA accuracy",
        "VQA Lang",
        "VQA match",
        "VQA final (no GPT)",
    ]
    lines = [_row(header), "|" + "---|" * len(header)]
    for name, entries in teacher.items():
        for when in ("handover", "end"):
            found = [e[when] for e in entries if e and when in e]
            if not found:
                continue
            steps = sorted({int(f.get("step", 0)) for f in found})
            cells = [
                name,
                f"{when} (step {'/'.join(map(str, steps))})",
                format_mean_std([f["planning"].get("overall/vad/l2") for f in found]),
                format_mean_std([f["planning"].get("overall/vad/collision") for f in found]),
            ]
            cells += [
                format_mean_std([f["vqa"].get(k) for f in found])
                for k in ("accuracy", "language_score", "match", "final_score_without_gpt")
            ]
            lines.append(_row(cells))
    if len(lines) == 2:
        return ""
    cv, blind = references.get("constant_velocity"), references.get("blind_vqa")
    if cv or blind:
        cells = [
            "reference: constant velocity / blind answers",
            "-",
            format_mean_std([cv.get("overall/vad/l2")]) if cv else "-",
            format_mean_std([cv.get("overall/vad/collision")]) if cv else "-",
        ]
        cells += [
            format_mean_std([blind.get(k)]) if blind else "-"
            for k in ("accuracy", "language_score", "match", "final_score_without_gpt")
        ]
        lines.append(_row(cells))
    return "\n".join(lines)


_CLOSED_LOOP = (
    ("score", "score", 1.0),
    ("success (%)", "success_rate", 100.0),
    ("at-fault col. (%)", "at_fault_collision_rate", 100.0),
    ("DAC", "dac", 1.0),
    ("progress ratio", "progress_ratio", 1.0),
    ("stuck (%)", "stuck_rate", 100.0),
)


def closed_loop_table(closed: dict[str, list[dict | None]], seeds: list[int], baseline: str = ARM_A) -> str:
    """Mean ± std over seeds of each arm's closed-loop summary, its per-scenario scores, and the paired score
    difference to ``baseline`` (empty when no arm was driven)."""
    closed = {name: entries for name, entries in closed.items() if any(entries)}
    if not closed:
        return ""
    scenarios = sorted({g for entries in closed.values() for e in entries if e for g in e["groups"]})
    header = ["method"] + [label for label, _, _ in _CLOSED_LOOP] + [f"{g} score" for g in scenarios]
    if baseline in closed:
        header.append("Δ score vs (A), paired")
    lines = [_row(header), "|" + "---|" * len(header)]
    base = [(e or {}).get("overall", {}).get("score") for e in closed.get(baseline, [])]
    for name, entries in closed.items():
        overall = [(e or {}).get("overall", {}) for e in entries]
        cells = [name] + [
            format_mean_std([None if o.get(key) is None else o[key] * scale for o in overall])
            for _, key, scale in _CLOSED_LOOP
        ]
        cells += [
            format_mean_std([(e or {}).get("groups", {}).get(g, {}).get("score") for e in entries]) for g in scenarios
        ]
        if baseline in closed:
            cells.append(
                "-"
                if name == baseline
                else paired([o.get("score") for o in overall], base, seeds, higher_is_better=True).format()
            )
        lines.append(_row(cells))
    return "\n".join(lines)


def _protocol_text(args: dict[str, Any]) -> str:
    if "teacher_warmup" not in args:
        return "Protocol of this (earlier) report: (A) trained the planner alone for E epochs.  \n"

    def value(key: str, unit: str = "") -> str:
        v = args.get(key)
        return "the config's" if v is None else f"{' '.join(map(str, v)) if isinstance(v, list) else v}{unit}"

    start = (
        f"Protocol: both arms start from the trained planner `{args['init']}` (no stage-1 run; its cost is not "
        "in the table)."
        if args.get("init")
        else "Protocol: both arms share one stage-1 run of E − E2 epochs per seed."
    )
    capped = (
        f" Stage 2 stops after {args['stage2_steps']} steps (warm-up included) of both arms; its lr schedules "
        f"span E2 epochs."
        if args.get("stage2_steps")
        else ""
    )
    return (
        f"{start} (A) then trains the planner alone "
        "on stage 2's step grid: the same planner updates, on the same batches in the same order, at the same "
        "planner lr as each (B) arm's planner, which is frozen during the teacher warm-up. (B) trains stage 2 "
        f"for E2 epochs. Teacher warm-up: {value('teacher_warmup', ' steps')} (terms "
        f"{value('warmup_terms')}); distillation ramp: {value('distill_ramp', ' steps')}; distillation loss: "
        f"{value('distill_loss')}; planner lr: {value('planner_lr')} x {value('planner_lr_multiplier')}."
        f"{capped}  \n"
    )


def section(reports: list[dict]) -> str:
    """The markdown section of docs/benchmarks.md for one or more (merged) reports."""
    args = reports[0]["args"]
    seeds = [s for rep in reports for s in rep["args"]["seeds"]]
    wall = [rep.get("elapsed_s") for rep in reports]
    wall_text = (
        " + ".join(f"{w / 60:.1f}" for w in wall if w is not None) + " min"
        if all(w is not None for w in wall)
        else "not recorded"
    )
    runs_text = "\n".join(
        f"Command: `{rep.get('command', '?')}`  \nMachine: {rep.get('machine', '?')}  " for rep in reports
    )
    if len(reports) > 1:
        runs_text += "\nMerged with `dima bench distill --from-reports ...` (one run per seed, run side by side).  "
    smoke = (
        f"\n**Smoke run** (every stage capped at {args['max_steps']} steps): these numbers only show the "
        "pipeline runs; they say nothing about whether distillation helps.\n"
        if args.get("max_steps")
        else ""
    )
    few = (
        f"\nOnly {len(seeds)} seed(s): the spread and the sign counts below cannot support a claim.\n"
        if len(seeds) < 3
        else ""
    )
    results = merge_reports(reports)
    out = (
        f"{SECTION_TITLE}\n\n{runs_text}\n"
        f"Seeds: {seeds}; E = {args['epochs']} epochs per arm, stage 2 = last {args['stage2_epochs']} of arm B; "
        f"wall time {wall_text}.  \n{_protocol_text(args)}"
        "Vision-only evaluation (LLM dropped) on split "
        f"`{args['val_split']}`; L2 avg over 1/2/3 s (m), collision avg (%); mean ± std over seeds. Paper claims "
        "(nuScenes, VAD-Tiny): -37% L2, -80% collision, -44% long-tail L2.\n"
        f"{smoke}{few}\n{metrics_table(results)}\n"
    )
    pairs = paired_table(results, seeds)
    if pairs:
        out += (
            "\nPaired over seeds (each arm minus (A) on the same seed; negative is better): mean ± std of the "
            "differences (seeds better / compared; per seed).\n\n" + pairs + "\n"
        )
    costs = cost_table(merge_reports(reports, "costs"))
    if costs:
        method = next((rep.get("flop_method") for rep in reports if rep.get("flop_method")), "")
        included = "the given planner's training not included" if args.get("init") else "stage 1 included"
        out += f"\nCost per arm (mean over seeds; {included}). FLOPs: {method}.\n\n{costs}\n"
    closed = closed_loop_table(merge_reports(reports, "closed_loop"), seeds)
    if closed:
        out += (
            f"\nClosed loop (`dima bench closed-loop`'s simulator and score, docs/closed_loop_metrics.md): every "
            f"arm drives {args.get('closed_loop_episodes')} episode(s) per scenario from scene seed "
            f"{args.get('closed_loop_seed')} (scenes no arm trained on), the same episodes for every arm; mean "
            "± std over seeds; the paired column is each arm's score minus (A)'s on the same seed (positive is "
            "better).\n\n" + closed + "\n"
        )
    references = next((rep.get("references") for rep in reports if rep.get("references")), {})
    teacher = teacher_table(merge_reports(reports, "teacher"), references)
    if teacher:
        out += (
            "\nThe teacher's own quality: MLLM-only planning (`dima eval --mode mllm` path) and DriveLM-style VQA "
            f"(`dima eval-vqa` path, rule tags, no GPT judge) on {args.get('vqa_frames')} frames of "
            f"`{args['val_split']}`, at the handover from the warm-up and at the end of stage 2. Reference row: "
            "constant-velocity plan, and the most frequent training answer to each question (no scene).\n\n"
            + teacher
            + "\n"
        )
    return out


def replace_section(path: str, text: str) -> None:
    """Replace this benchmark's section of ``path`` (up to the next '## ' heading), or append it."""
    doc = Path(path)
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start = old.find(SECTION_TITLE)
    if start >= 0:
        end = old.find("\n## ", start + len(SECTION_TITLE))
        new = old[:start] + text + (old[end + 1 :] if end >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new if new.endswith("\n") else new + "\n")


__all__ = [
    "PROTOCOL_ARGS",
    "SECTION_TITLE",
    "closed_loop_table",
    "cost_table",
    "merge_reports",
    "metrics_table",
    "paired_table",
    "replace_section",
    "section",
    "teacher_table",
]
