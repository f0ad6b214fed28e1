#!/usr/bin/env bash
# Decode-step breakdown: GEMV microbenchmark, per-kernel profiles of bs1 decode (8B and 1B shapes).
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
for shape in llama-3-8b llama-3.2-1b; do
  python3 -m sglang.testing.tiny_model --shape $shape --out /tmp/$shape >/dev/null 2>&1
done
for shape in llama-3-8b llama-3.2-1b; do
  echo "== profile $shape bs1"
  timeout 150 python3 benchmarks/gpu/profile_decode.py --model-path /tmp/$shape --load-format dummy \
    --batch-size 1 --input-len 128 --steps 20 --out "$OUT/profile_$shape.json" 2>&1 >/dev/null | grep -v -i "warn\|loading" | tail -30
done
echo "== gemv"
timeout ${GEMV_TIMEOUT:-240} python3 benchmarks/kernels/bench_gemv.py ${GEMV_ARGS:-} --out "$OUT/gemv.json" 2>&1 | grep "^{'shape" | cut -c1-400
