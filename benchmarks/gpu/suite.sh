#!/usr/bin/env bash
# One device call: GPU tests, then the issue-7 benchmarks at real shapes with dummy weights.
# Usage on the GPU host (after installing the carried wheels): bash benchmarks/gpu/suite.sh "$OUT"
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
python3 -m sglang.testing.tiny_model --shape llama-3-8b --out /tmp/l8b >/dev/null 2>&1
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout 240 python3 -m pytest tests/gpu -q -x -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/gpu_tests.log"
fi
if [ "${SKIP_ONE_BATCH:-0}" != 1 ]; then
  timeout 150 python3 -m sglang.bench_one_batch --model-path /tmp/l8b --load-format dummy --batch-size 1 \
    --input-len 128 --output-len 128 --result-file "$OUT/one_batch.jsonl" 2>&1 | grep -vi "loading\|warn" | tail -4
  timeout 120 python3 -m sglang.bench_one_batch --model-path /tmp/l8b --load-format dummy --batch-size 128 \
    --input-len 128 --output-len 8 --result-file "$OUT/one_batch.jsonl" 2>&1 | grep -vi "loading\|warn" | tail -4
fi
timeout 300 python3 -m sglang.bench_offline_throughput --model-path /tmp/l8b --load-format dummy --dataset-name random \
  --num-prompts "${NUM_PROMPTS:-2000}" --random-input-len 256 --random-output-len 256 --random-range-ratio 1 \
  --result-file "$OUT/offline.jsonl" --log-level warning 2>&1 | tail -4
timeout 150 python3 benchmarks/constrained/bench_structured.py --model /tmp/l8b --load-format dummy --device cuda \
  --out "$OUT/structured.json" 2>&1 | grep -E "ratio|speedup|output_tok_s" | head -8
