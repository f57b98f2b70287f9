#!/usr/bin/env bash
# `make demo`: the whole chain on a 2-core CPU box (budget: 15 minutes; README "make demo").
#   synthesize a small nuScenes-format world + pictures -> short stage-1 and stage-2 training of dima_tiny (SmolLM2
#   teacher; both checkpoints are cached under outputs/demo_cache/, DEMO_FRESH=1 rebuilds them) -> ONNX export
#   (with BEAM tokens) -> rosbag2 -> `dima ros bringup --bag` (planner on onnxruntime + MLLM node + online evaluator:
#   prints trajectories, latency and online metrics) -> `dima ros ask` (AskScene) prints the MLLM's answer.
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

echo "[demo] 1/7 synthesize a 2-scene world -> $WORLD"
dima data synth --out "$WORLD" --scenes 2 --seed 0 --overwrite

echo "[demo] 2/7 render keyframes -> $OUT/*.png"
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
STAGE1="$CACHE/stage1"
STAGE2="$CACHE/stage2"
COMMON=(--dataroot "$WORLD" --version "$VERSION" --val-split none --no-tensorboard --device cpu)

echo "[demo] 3/7 stage-1 training of dima_tiny (${DEMO_STAGE1_STEPS:-40} steps; cached in $STAGE1)"
if [[ ! -f "$STAGE1/latest" && -z "$(ls "$STAGE1"/checkpoint_*.pt 2>/dev/null)" ]]; then
  dima train --stage 1 --config config/train/stage1_dima_tiny.yaml --out "$STAGE1" \
    --max-steps "${DEMO_STAGE1_STEPS:-40}" "${COMMON[@]}"
fi
echo "[demo] 4/7 stage-2 joint training with the SmolLM2 teacher (${DEMO_STAGE2_STEPS:-8} steps; cached in $STAGE2)"
if [[ ! -f "$STAGE2/latest" && -z "$(ls "$STAGE2"/checkpoint_*.pt 2>/dev/null)" ]]; then
  dima train --stage 2 --config config/train/stage2_dima_tiny.yaml --init "$STAGE1" --out "$STAGE2" \
    --max-steps "${DEMO_STAGE2_STEPS:-8}" "${COMMON[@]}"
fi

echo "[demo] 5/7 export the distilled planner to ONNX (with BEAM tokens for the MLLM node)"
dima export --format onnx --checkpoint "$STAGE2" --out "$OUT/onnx" --name planner --with-beam

echo "[demo] 6/7 rosbag2 of the world, replayed into the planner + MLLM node + online evaluator"
dima bag convert --dataroot "$WORLD" --version "$VERSION" --scene scene-0001 --scene scene-0002 --out "$OUT/bag" \
  --overwrite
BRINGUP_LOG="$OUT/bringup.log"
# In the background, so that the question below goes to the running MLLM node from another process; --linger keeps
# the nodes up after the replay until we stop them.
# Half speed: dima_tiny takes ~1 s per frame on one shared CPU core, and the planner drops frames it cannot keep up
# with (a stale plan is worse than none); at 1 Hz of keyframes almost every frame gets its trajectory.
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

echo "[demo] 7/7 ask the MLLM node (AskScene) about the last replayed frame"
dima ros ask "What should the ego vehicle do next, and why?" --timeout 300
kill -INT "$BRINGUP_PID"
wait "$BRINGUP_PID" || true
trap - EXIT
echo "[demo] done: pictures, $OUT/online_report.json, $BRINGUP_LOG"
