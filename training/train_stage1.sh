#!/usr/bin/env bash
# Stage-1 training entry: one process, one node (torchrun), or one node of a multi-node job. Thin wrapper over
# `python -m dima_core.cli train --stage 1`; every extra argument goes to it (see `dima train --help`).
#
#   training/train_stage1.sh                                        # VAD-Tiny config, all GPUs of this node
#   NPROC=1 training/train_stage1.sh config/train/stage1_dima_tiny.yaml --dataroot data/synth   # CPU / 1 process
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 training/train_stage1.sh   # on node0, and NODE_RANK=1 on node1
#
# Environment: NPROC (processes per node; default: number of GPUs, else 1), NNODES (1), NODE_RANK (0),
# MASTER_ADDR / MASTER_PORT (rendezvous host:port for multi-node; default 127.0.0.1:29500), RDZV_ID (job id).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-python}"

CONFIG="config/train/stage1_vad_tiny.yaml"
if [[ $# -gt 0 && "$1" != --* ]]; then
  CONFIG="$1"
  shift
fi

if [[ -z "${NPROC:-}" ]]; then
  NPROC="$(command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --list-gpus | wc -l || echo 1)"
  [[ "$NPROC" -ge 1 ]] || NPROC=1
fi
NNODES="${NNODES:-1}"

if [[ "$NNODES" -eq 1 && "$NPROC" -eq 1 ]]; then
  exec "$PYTHON" -m dima_core.cli train --stage 1 --config "$CONFIG" "$@"
elif [[ "$NNODES" -eq 1 ]]; then
  # --standalone: a private rendezvous on a free port; no MASTER_ADDR needed on one node.
  exec "$PYTHON" -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node "$NPROC" \
    -m dima_core.cli train --stage 1 --config "$CONFIG" "$@"
else
  exec "$PYTHON" -m torch.distributed.run --nnodes "$NNODES" --node_rank "${NODE_RANK:-0}" \
    --nproc_per_node "$NPROC" --rdzv_backend c10d --rdzv_id "${RDZV_ID:-dima-stage1}" \
    --rdzv_endpoint "${MASTER_ADDR:-127.0.0.1}:${MASTER_PORT:-29500}" \
    -m dima_core.cli train --stage 1 --config "$CONFIG" "$@"
fi
