#!/usr/bin/env bash
# `make demo`: the whole chain on a 2-core CPU box (budget: 15 minutes; README "make demo").
#   a small held-out world + pictures -> the shipped planner (dima_core/weights/planner_drive.safetensors,
#   docs/planner_model_card.md) exported to ONNX with BEAM tokens -> a short teacher warm-up of the SmolLM2 MLLM on
#   the frozen shipped planner (cached under outputs/demo_cache/, DEMO_FRESH=1 rebuilds it) -> rosbag2 ->
#   `dima ros bringup --bag` (planner on onnxruntime + MLLM node + online evaluator: trajectories, latency, online
#   metrics) -> `dima ros ask` (AskScene) prints the MLLM's answer -> `dima ros bringup --sim`: the planner drives the
#   closed-loop simulator over ROS 2 (table: planner vs expert vs constant velocity) -> one episode's MP4 + PNG.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source tools/env.sh
export MPLBACKEND="${MPLBACKEND:-Agg}"

OUT="${DEMO_OUT:-outputs/demo}"
WORLD="$OUT/world"
VERSION="v1.0-synth"
mkdir -p "$OUT"

PLANNER_WEIGHTS="${DEMO_PLANNER:-dima_core/weights/planner_drive.safetensors}"
echo "[demo] 1/9 synthesize a 2-scene world (the shipped planner's held-out world config, seed 2) -> $WORLD"
dima data synth --config config/synth_drive_eval.yaml --out "$WORLD" --scenes 2 --seed 2 --overwrite

echo "[demo] 2/9 render keyframes -> $OUT/*.png"
# --sample takes a token or an integer index into the keyframes (scene by scene, time order): first and last keyframe,
# plus the first one with the QA generator's key-object tags.
dima data show --dataroot "$WORLD" --version "$VERSION" --sample 0 --out "$OUT/sample_first.png"
dima data show --dataroot "$WORLD" --version "$VERSION" --sample=-1 --out "$OUT/sample_last.png"
dima data show --dataroot "$WORLD" --version "$VERSION" --sample 0 --qa --out "$OUT/sample_first_qa.png"

echo "[demo] pictures: $(ls "$OUT"/*.png | tr '\n' ' ')"

# One intra-op thread per process: the box has 2 shared cores and the bringup runs three nodes at once.
export OMP_NUM_THREADS=1
CACHE="${DEMO_CACHE:-outputs/demo_cache}"
if [[ "${DEMO_FRESH:-0}" == 1 ]]; then rm -rf "$CACHE"; fi
mkdir -p "$CACHE"
STAGE2="$CACHE/teacher_planner_drive"  # named by what it is trained for: a cache of another planner is never reused
COMMON=(--dataroot "$WORLD" --version "$VERSION" --val-split none --no-tensorboard --device cpu)

echo "[demo] 3/9 the shipped planner $PLANNER_WEIGHTS -> ONNX (with BEAM tokens for the MLLM node)"
dima weights show "$PLANNER_WEIGHTS"
dima export --format onnx --checkpoint "$PLANNER_WEIGHTS" --out "$OUT/onnx" --name planner --with-beam

echo "[demo] 4/9 teacher warm-up: the SmolLM2 MLLM learns to read the frozen shipped planner's BEAM tokens" \
  "(${DEMO_STAGE2_STEPS:-8} steps; cached in $STAGE2)"
if [[ ! -f "$STAGE2/latest" && -z "$(ls "$STAGE2"/checkpoint_*.pt 2>/dev/null)" ]]; then
  dima train --stage 2 --config config/train/stage2_planner_drive.yaml --init "$PLANNER_WEIGHTS" --out "$STAGE2" \
    --max-steps "${DEMO_STAGE2_STEPS:-8}" "${COMMON[@]}"
fi

echo "[demo] 5/9 rosbag2 of the world, replayed into the planner + MLLM node + online evaluator"
dima bag convert --dataroot "$WORLD" --version "$VERSION" --scene scene-0001 --scene scene-0002 --out "$OUT/bag" \
  --overwrite
BRINGUP_LOG="$OUT/bringup.log"
# In the background, so that the question below goes to the running MLLM node from another process; --linger keeps
# the nodes up after the replay until we stop them.
# Half speed: the MLLM node's LLM shares the two cores with the planner, and the planner drops frames it cannot keep
# up with (a stale plan is worse than none); at 1 Hz of keyframes almost every frame gets its trajectory.
# DEMO_DUAL=1 also has the MLLM node publish the DiMA-Dual trajectory; on 2 shared cores its LLM forward takes CPU
# from the planner, which then drops more frames (measured: 62 instead of 80 vision trajectories), so it is opt-in.
DUAL=false
if [[ "${DEMO_DUAL:-0}" == 1 ]]; then DUAL=true; fi
dima ros bringup --config config/bringup.yaml --with-mllm --bag "$OUT/bag" --rate "${DEMO_RATE:-0.5}" --report "$OUT/online_report.json" --echo \
  --linger 600 --set "planner.model.onnx_path=$OUT/onnx/planner.onnx" --set planner.model.threads=1 \
  --set "mllm.checkpoint=$STAGE2" --set mllm.device=cpu --set mllm.num_threads=1 --set mllm.max_new_tokens=32 \
  --set "mllm.publish_dual_trajectory=$DUAL" \
  > >(tee "$BRINGUP_LOG") 2>&1 &
BRINGUP_PID=$!
trap 'kill -INT "$BRINGUP_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  if grep -q "serving .* more" "$BRINGUP_LOG" 2>/dev/null; then break; fi
  if ! kill -0 "$BRINGUP_PID" 2>/dev/null; then echo "[demo] bringup exited early; see $BRINGUP_LOG" >&2; exit 1; fi
  sleep 1
done

echo "[demo] 6/9 ask the MLLM node (AskScene) about the last replayed frame"
dima ros ask "What should the ego vehicle do next, and why?" --timeout 300
kill -INT "$BRINGUP_PID"
wait "$BRINGUP_PID" || true
trap - EXIT

echo "[demo] 7/9 closed loop over ROS 2: the shipped planner drives the simulator (lockstep; every scenario, seed 1000)"
SIM_OUT="$OUT/sim_ros"
dima ros bringup --sim --scenarios ${DEMO_SIM_SCENARIOS:-all} --episodes 1 --seed 1000 --timing lockstep \
  --sim-out "$SIM_OUT" --set "planner.model.onnx_path=$OUT/onnx/planner.onnx" --set planner.model.threads=1 \
  --set planner.output.processing_time_budget_ms=1000.0 2>&1 | tee "$OUT/sim_ros.log"

echo "[demo] 8/9 one episode on video: the same planner, scenario ${DEMO_VIDEO_SCENARIO:-turn_left} seed 1000 (Python loop," \
  "identical to the ROS loop in lockstep: test_sim_node.py)"
dima sim run --policy "onnx:$OUT/onnx/planner.onnx" --scenarios "${DEMO_VIDEO_SCENARIO:-turn_left}" --episodes 1 \
  --seed 1000 --baselines expert --out "$OUT/sim_video"

echo "[demo] 9/9 done: pictures, $OUT/online_report.json, $BRINGUP_LOG, closed loop $SIM_OUT/report.json," \
  "video $(ls "$OUT"/sim_video/episodes/*.mp4 2>/dev/null | head -1), summary $(ls "$OUT"/sim_video/episodes/*.png 2>/dev/null | head -1)"
