#!/usr/bin/env bash
# One call on a GPU machine (< 8 min on one GPU): DINO, MAE and I-JEPA on ViT-S/16 at 224 px for a
# fixed number of steps, the whole training loop on the device, the analysis of one checkpoint;
# prints images per second and FLOP utilisation (benchmarks/gpu_check.py). Refuses without CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: no CUDA GPU is visible to $PY (torch.cuda.is_available() is False); run it on a GPU machine" >&2
  exit 2
fi
exec "$PY" benchmarks/gpu_check.py "$@"
