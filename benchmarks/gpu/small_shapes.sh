#!/usr/bin/env bash
# GPU tests, then decode bs1 for the 8B, 1B and 0.5B shapes (dummy weights) with bench_one_batch.
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
timeout 200 python3 -m pytest tests/gpu -q -x -p no:cacheprovider 2>&1 | tail -6 | tee "$OUT/gpu_tests.log"
for shape in llama-3-8b llama-3.2-1b qwen2.5-0.5b; do
  python3 -m sglang.testing.tiny_model --shape $shape --out /tmp/$shape >/dev/null 2>&1
  echo "== $shape bs1"
  timeout 120 python3 -m sglang.bench_one_batch --model-path /tmp/$shape --load-format dummy --batch-size 1 \
    --input-len 128 --output-len 128 --result-file "$OUT/one_batch.jsonl" 2>&1 | grep -vi "loading\|warn" | tail -3
done
echo "== llama-3-8b bs128"
timeout 120 python3 -m sglang.bench_one_batch --model-path /tmp/llama-3-8b --load-format dummy --batch-size 128 \
  --input-len 128 --output-len 8 --result-file "$OUT/one_batch.jsonl" 2>&1 | grep -vi "loading\|warn" | tail -3
