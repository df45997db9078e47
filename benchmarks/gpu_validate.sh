#!/usr/bin/env bash
# Measure the validation shape set on this machine's CUDA GPU and predict it with the matching GPU target:
#
#   bash benchmarks/gpu_validate.sh [OUT_DIR]
#
# Writes OUT_DIR (default results/validation/<gpu name>) with measured.csv, machine.json (GPU name, driver,
# CUDA, cuDNN and torch versions), predictions.csv, summary.json and validation.png.  Commit that folder:
# tests/sim/test_validate.py then checks the model against it (goal: MAPE at most 10%).
#
# Needs a Python with a CUDA build of torch plus numpy, pandas, pydantic, pyyaml, rich and matplotlib
# (PYTHON=... to choose it; default .venv/bin/python, else python3).  The shapes come from
# benchmarks/gpu_shapes.csv (the `gpu` set, written by `sim.validate.shape_set("gpu")`), so the GPU
# machine needs neither transformers nor the model zoo.  About 60 GEMMs x (warm-up + 7 samples of
# >= 2 ms): well under 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    PY=.venv/bin/python
  else
    PY=python3
  fi
fi
ARGS=(validate --device cuda --shapes benchmarks/gpu_shapes.csv)
if [ $# -ge 1 ]; then ARGS+=(--out "$1"); fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m sim "${ARGS[@]}"
