#!/usr/bin/env bash
# Download the wheels that scripts/gpu_check.sh installs on a GPU machine that has torch, Lightning, timm and
# transformers but no package index: cxrl's other runtime needs (pure-Python wheels for CPython 3.12, x86-64).
#   scripts/gpu_wheels.sh [DIR]      (default .whl/, ignored by git; then: scripts/gpu_check.sh --wheels DIR)
# Versions are the tested pins of constraints.txt; hydra-core/omegaconf (lightly's CLI only) are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
pin() { grep -i "^$1==" constraints.txt || { echo "gpu_wheels: $1 is not pinned in constraints.txt" >&2; exit 1; }; }
python=${PYTHON:-python3}
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir" \
    "$(pin lightly)" "$(pin pydicom)" "$(pin umap-learn)" "$(pin pynndescent)" \
    open_clip_torch==3.2.0 ftfy==6.3.1 wcwidth==0.2.14
ls "$dir"
