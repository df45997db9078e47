#!/usr/bin/env bash
# Every GPU measurement this project takes, in one go, in about 8 minutes at most (a lent GPU
# machine's time is short; each step has its own time limit, and a step that fails or runs out
# leaves the others' results):
#
#   OUT=/some/folder bash benchmarks/device_checks.sh
#
# 1. the GEMM validation set (benchmarks/gpu_validate.sh)                       -> $OUT/validation/       (150 s)
# 2. attention kernels: SDPA backends and the unfused path, prefill and decode at
#    several contexts, with the GPU target's prediction (benchmarks/gpu_attention.py) -> $OUT/gpu_attention.csv (45 s)
# 3. per-op host dispatch in eager mode: timers and torch.profiler (benchmarks/gpu_dispatch.py)
#                                                                                -> $OUT/gpu_dispatch.csv  (25 s)
# 4. whole models, eager: Llama-2-7B- and Llama-3-8B-shaped (random weights, static KV cache) against
#    the eager target with the host measured on the model's twin (sim validate --e2e) -> $OUT/e2e-<model>/ (2 x 70 s)
# 5. whole model, compiled (torch.compile, CUDA graphs): Llama-2-7B-shaped against the compiled target
#    (sim validate --e2e --runtime compiled; Llama-3-8B is left out for time)   -> $OUT/e2e-compiled-Llama-2-7B/ (110 s)
# 6. the Lamarr pipeline's networks per stage, batch and dtype (benchmarks/lamarr_gpu.py) -> $OUT/lamarr_gpu.csv (40 s)
# Python packages the GPU image lacks (pydantic, simpy, transformers) can be carried as wheels in .whl/
# (see the device notes).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the output folder}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
PYTHON=python3 timeout 150 bash benchmarks/gpu_validate.sh "$OUT/validation" 2>&1 | tail -20
timeout 45 python3 benchmarks/gpu_attention.py --out "$OUT/gpu_attention.csv" 2>&1 | tail -30
timeout 25 python3 benchmarks/gpu_dispatch.py --out "$OUT/gpu_dispatch.csv" 2>&1 | tail -25
for model in Llama-2-7B Llama-3-8B; do
  timeout 70 python3 -m sim validate --device cuda --e2e --model "$model" --prompt 512 --decode-tokens 32 \
    --out "$OUT/e2e-$model" 2>&1 | tail -8
done
timeout 110 python3 -m sim validate --device cuda --e2e --model Llama-2-7B --runtime compiled --prompt 512 \
  --decode-tokens 32 --out "$OUT/e2e-compiled-Llama-2-7B" 2>&1 | tail -8
timeout 40 python3 benchmarks/lamarr_gpu.py --out "$OUT/lamarr_gpu.csv" 2>&1 | tail -5
ls -R "$OUT" | head -40
