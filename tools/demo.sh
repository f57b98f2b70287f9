#!/usr/bin/env bash
# `make demo`: the main job as far as it exists. For now: synthesize a small nuScenes-format driving world and render
# keyframes (six cameras with projected GT boxes + BEV panel) into outputs/demo/. Later issues append stages here.
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

echo "[demo] 1/2 synthesize a 2-scene world -> $WORLD"
dima data synth --out "$WORLD" --scenes 2 --seed 0 --overwrite

echo "[demo] 2/2 render keyframes -> $OUT/*.png"
# --sample takes a token or an integer index into the keyframes (scene by scene, time order): first and last keyframe,
# plus the first one with the QA generator's key-object tags.
dima data show --dataroot "$WORLD" --version "$VERSION" --sample 0 --out "$OUT/sample_first.png"
dima data show --dataroot "$WORLD" --version "$VERSION" --sample=-1 --out "$OUT/sample_last.png"
dima data show --dataroot "$WORLD" --version "$VERSION" --sample 0 --qa --out "$OUT/sample_first_qa.png"

echo "[demo] done: $(ls "$OUT"/*.png | tr '\n' ' ')"
