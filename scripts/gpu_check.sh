#!/usr/bin/env bash
# The one-call GPU check (see scripts/gpu_check.py and the README's GPU section). On the GPU machine:
#   bash scripts/gpu_check.sh            (results in $OUT/gpu_check.json and $OUT/gpu_check.log)
# Here, without CUDA:  bash scripts/gpu_check.sh --dry-run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# python3 is the interpreter that holds PyTorch on the GPU machine; PYTHON overrides it.
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
