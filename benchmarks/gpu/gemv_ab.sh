#!/usr/bin/env bash
# One-token fused GEMV path, A/B in one device call: its kernel tests, then bench_one_batch decode
# bs1 (in 128, out 128) per shape with the fused path on (--enable-fused-gemv) and off, alternating
# REPEATS times on the same machine, and a per-kernel profile of the 8B step with the path on.
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
timeout 150 python3 -m pytest tests/gpu/test_kernels_elementwise.py -q -p no:cacheprovider -rf -k gemv 2>&1 \
  | tail -4 | tee "$OUT/gemv_tests.log"
quiet() { grep -v -i "warn\|loading\|^\s*$" | tail -${1:-3}; }
for shape in ${SHAPES:-llama-3-8b llama-3.2-1b qwen2.5-0.5b}; do
  python3 -m sglang.testing.tiny_model --shape $shape --out /tmp/$shape >/dev/null 2>&1
  for i in $(seq 1 ${REPEATS:-2}); do
    for mode in fused unfused; do
      flag=(); [ $mode = fused ] && flag=(--enable-fused-gemv)
      echo "== $shape bs1 $mode #$i"
      timeout 120 python3 -m sglang.bench_one_batch --model-path /tmp/$shape --load-format dummy --batch-size 1 \
        --input-len 128 --output-len 128 --result-file "$OUT/gemv_ab_${mode}.jsonl" "${flag[@]}" 2>&1 | quiet 2
    done
  done
done
[ "${SKIP_PROFILE:-0}" = 1 ] || {
  echo "== profile llama-3-8b bs1 fused"
  timeout 120 python3 benchmarks/gpu/profile_decode.py --model-path /tmp/llama-3-8b --load-format dummy \
    --batch-size 1 --input-len 128 --steps 20 --enable-fused-gemv --out "$OUT/profile_fused.json" 2>&1 >/dev/null | quiet 14
}
