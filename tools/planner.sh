#!/usr/bin/env bash
# `make planner`: rebuild the shipped CPU planner (dima_core/weights/planner_drive.safetensors) from nothing, and
# score it as its model card does (docs/planner_model_card.md). About 1.5-2 hours of a 2-core CPU box: the training
# world (~11 min), two epochs of dima_cpu_fast (~40-70 min, with the image cache), the held-out world, open- and
# closed-loop evaluation. Every step resumes or is skipped when its output exists (PLANNER_FRESH=1 starts over).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source tools/env.sh
export MPLBACKEND="${MPLBACKEND:-Agg}"

RUN="${PLANNER_RUN:-runs/planner_drive}"
WORLD=data/synth_drive
HELDOUT=data/synth_drive_eval
WEIGHTS="${PLANNER_WEIGHTS:-dima_core/weights/planner_drive.safetensors}"
REPORTS="${PLANNER_REPORTS:-docs/bench_results}"
if [[ "${PLANNER_FRESH:-0}" == 1 ]]; then rm -rf "$RUN"; fi

echo "[planner] 1/5 training world: 240 scenes of config/synth_drive.yaml (seed 0) -> $WORLD"
if [[ ! -f "$WORLD/v1.0-synth/scene.json" ]]; then
  dima data synth --config config/synth_drive.yaml --out "$WORLD" --scenes 240 --seed 0 --no-qa
fi
echo "[planner] 2/5 stage-1 training (config/train/planner_drive.yaml) -> $RUN (resumes when interrupted)"
if [[ -f "$RUN/latest" ]]; then
  dima train --stage 1 --config config/train/planner_drive.yaml --out "$RUN" --resume "$RUN"
else
  dima train --stage 1 --config config/train/planner_drive.yaml --out "$RUN"
fi
echo "[planner] 3/5 weights file -> $WEIGHTS"
dima weights export "$RUN" --out "$WEIGHTS" --note world=config/synth_drive.yaml --note world_seed=0 \
  --note world_scenes=240
echo "[planner] 4/5 held-out world: 40 scenes of config/synth_drive_eval.yaml (seed 1) -> $HELDOUT"
if [[ ! -f "$HELDOUT/v1.0-synth/scene.json" ]]; then
  dima data synth --config config/synth_drive_eval.yaml --out "$HELDOUT" --scenes 40 --seed 1 --no-qa
fi
echo "[planner] 5/5 open loop on the held-out world (planner vs AD-MLP vs constant velocity) and closed loop"
# AD-MLP is fitted on the planner's own training split, so both see the same data; scored on the held-out world.
ADMLP="$RUN/admlp_synth_drive.pt"
if [[ ! -f "$ADMLP" ]]; then
  dima sim fit-admlp --dataroot "$WORLD" --split train --out "$ADMLP"
fi
dima eval --checkpoint "$WEIGHTS" --dataroot "$HELDOUT" --version v1.0-synth --split all --name planner_drive \
  --admlp-model "$ADMLP" --out "$REPORTS/planner_drive_open_loop.json"
dima bench closed-loop --policy "checkpoint:$WEIGHTS" --admlp "$ADMLP" --scenarios all --episodes 3 --seed 1000 \
  --out outputs/planner_closed_loop --doc docs/benchmarks.md
echo "[planner] done: $WEIGHTS, $REPORTS/planner_drive_open_loop.json, docs/benchmarks.md (closed loop)"
