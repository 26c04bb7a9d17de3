#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with the wheels scripts/gpu_wheels.txt pins, for CPython 3.12 on x86-64 Linux,
# from the package registry: the GPU machine reaches none, so scripts/gpu_check.sh installs them from there.
# Usage: bash scripts/fetch_gpu_wheels.sh [DEST]   (DEST defaults to .whl/ in the repository root)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$root/.whl}
py=${PYTHON:-python3}
mkdir -p "$dest"
# --no-deps: the list already names the few packages that image lacks; the hashes pin the exact files.
"$py" -m pip download --disable-pip-version-check --no-deps --require-hashes --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    -r "$root/scripts/gpu_wheels.txt" -d "$dest"
"$py" "$root/scripts/gpu_wheels.py" --wheels "$dest"
