#!/usr/bin/env bash
# Frontend on the GPU: the lang/compiler tests against a CUDA server on the tiny model, and the
# program benchmark (compiled / interpreted / no-radix baseline) on the Llama-3-8B shape with
# dummy weights (the text is random; the timings and prefill counts are what matter).
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
python3 -m sglang.testing.tiny_model --shape llama-3-8b --out /tmp/l8b >/dev/null 2>&1
timeout 280 python3 benchmarks/frontend/bench_programs.py --model-path /tmp/l8b --load-format dummy \
  --device cuda --max-total-tokens 200000 --num-classify 128 --num-tree 32 --repeats 2 --out "$OUT/frontend_programs.json" \
  > "$OUT/frontend_programs.log" 2>&1
grep -E "compiled|interpreted|baseline|Error|error" "$OUT/frontend_programs.log" | grep -v '"' | head -12
