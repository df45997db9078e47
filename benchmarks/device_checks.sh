#!/usr/bin/env bash
# Every GPU measurement this project takes, in one go (a lent GPU machine's time is short):
#
#   OUT=/some/folder bash benchmarks/device_checks.sh
#
# 1. the Lamarr pipeline's networks per stage, batch and dtype (benchmarks/lamarr_gpu.py) -> $OUT/lamarr_gpu.csv
# 2. the GEMM validation set (benchmarks/gpu_validate.sh) -> $OUT/validation/
# Python packages the GPU image lacks (pydantic, simpy) can be carried as wheels in .whl/ (see the device notes).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the output folder}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 180 python3 benchmarks/lamarr_gpu.py --out "$OUT/lamarr_gpu.csv"
PYTHON=python3 timeout 360 bash benchmarks/gpu_validate.sh "$OUT/validation" 2>&1 | tail -40
