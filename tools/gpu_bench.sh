#!/usr/bin/env bash
# GPU latency of the planner in one markdown table: vad_tiny and the shipped CPU planner (planner_drive) with torch
# eager fp32 / bf16 / fp16, CUDA graphs, onnxruntime's CUDA provider and TensorRT where installed, torch.compile,
# and the ROS planner node on the GPU backend. What each cell measures: benchmarks/gpu.py (`dima bench gpu`).
#
#   tools/gpu_bench.sh [OUT.md] [dima bench gpu options...]     # default OUT: docs/bench_results/gpu_bench.md
#
# Self-contained on a GPU machine without network: it needs only this working tree and a Python whose torch is a
# CUDA build. The interpreter, first that sees a CUDA device:
#   1. $DIMA_GPU_PYTHON, if set;
#   2. the project's .venv (through tools/env.sh: the ROS node rows need its rclpy and colcon overlay);
#   3. python3 on PATH (e.g. a GPU image's own torch; this tree is put first on PYTHONPATH). The ROS rows then say
#      "not installed" unless that Python has rclpy.
# Without a CUDA device it exits at once with status 2 and says why; nothing is written. Time: a hard limit of
# $DIMA_GPU_BENCH_LIMIT_S (default 450 s) on the benchmark, which starts no cell after $DIMA_GPU_BENCH_BUDGET_S
# (default 360 s) and writes the table after every cell, so a run stopped by the limit keeps what it measured.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="docs/bench_results/gpu_bench.md"
if [[ $# -gt 0 && "$1" != -* ]]; then
  out="$1"
  shift
fi
limit_s="${DIMA_GPU_BENCH_LIMIT_S:-450}"
budget_s="${DIMA_GPU_BENCH_BUDGET_S:-360}"
shown="tools/gpu_bench.sh $out${*:+ $*}"

log() { echo "gpu_bench: $*" >&2; }

# probe PYTHON: 0 when its torch sees a CUDA device; prints torch's version and CUDA build either way.
probe() {
  timeout 120 "$1" -c '
import sys
try:
    import torch
except ImportError as exc:
    print(f"no torch ({exc})"); sys.exit(3)
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, device visible: {torch.cuda.is_available()}")
sys.exit(0 if torch.cuda.is_available() else 4)' 2>&1 | tail -n 1
  return "${PIPESTATUS[0]}"
}

python=""
tried=()
candidates=()
[[ -n "${DIMA_GPU_PYTHON:-}" ]] && candidates+=("env:$DIMA_GPU_PYTHON")
[[ -x "$root/.venv/bin/python" ]] && candidates+=("venv:$root/.venv/bin/python")
command -v python3 >/dev/null 2>&1 && candidates+=("path:$(command -v python3)")
for entry in "${candidates[@]}"; do
  kind="${entry%%:*}"
  py="${entry#*:}"
  if [[ "$kind" == venv ]]; then
    # probed in its environment (a subshell: a .venv without CUDA leaves nothing behind for the next candidate)
    # shellcheck disable=SC1091
    if said="$(source "$root/tools/env.sh" >/dev/null 2>&1; probe "$py")"; then
      source "$root/tools/env.sh" >/dev/null 2>&1
      python="$py"
    fi
  elif said="$(probe "$py")"; then
    python="$py"
  fi
  if [[ -n "$python" ]]; then
    log "using $py: $said"
    break
  fi
  tried+=("$py: $said")
  [[ "$kind" == venv ]] && log "the .venv's torch sees no CUDA device ($said)"
done

if [[ -z "$python" ]]; then
  {
    echo "gpu_bench: no CUDA device present: no Python here has a torch that sees a CUDA GPU."
    if command -v nvidia-smi >/dev/null 2>&1; then
      echo "  nvidia-smi: $(nvidia-smi -L 2>&1 | head -n 1)"
    else
      echo "  nvidia-smi: not found (no NVIDIA driver on this machine)"
    fi
    for t in "${tried[@]}"; do echo "  tried $t"; done
    [[ ${#tried[@]} -eq 0 ]] && echo "  no Python interpreter found (set DIMA_GPU_PYTHON)"
    echo "  Nothing was measured; $out was not written. Run on a machine with an NVIDIA GPU and a CUDA build of"
    echo "  torch (or set DIMA_GPU_PYTHON to one)."
  } >&2
  exit 2
fi

export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! err="$("$python" -c 'import benchmarks.gpu' 2>&1)"; then
  log "$python cannot import the benchmark (a package missing from that Python?):"
  echo "$err" | tail -n 5 >&2
  exit 2
fi
log "limit ${limit_s} s, no cell started after ${budget_s} s; table: $out"
status=0
timeout --signal=INT --kill-after=15 "$limit_s" \
  "$python" -m benchmarks.gpu --out "$out" --budget-s "$budget_s" --command "$shown" "$@" || status=$?
if [[ $status -eq 0 ]]; then
  log "done: $out"
elif [[ $status -eq 124 ]]; then
  log "stopped by the ${limit_s} s limit; $out has the cells measured until then"
else
  log "finished with status $status (1: a cell failed, see its note in $out)"
fi
exit "$status"
