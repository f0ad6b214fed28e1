#!/usr/bin/env bash
# Structured generation on the GPU: JSON-schema vs unconstrained offline throughput (same prompts,
# same per-request token counts) at batch 32 and batch 1, with jump-forward in the batch (default),
# the old re-prefill path and jump-forward off; then the per-step cost of a length-bounded schema.
# Llama-3-8B shape, dummy weights.  Usage: SGLANG_BENCH_COMMIT=<commit> bash benchmarks/gpu/structured.sh OUT_DIR
# MODES picks among bs32_inbatch bs32_old bs32_off bs1_inbatch bs1_old bs1_off (all by default).
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
python3 -m sglang.testing.tiny_model --shape llama-3-8b --out /tmp/l8b >/dev/null 2>&1
for m in ${MODES:-bs32_inbatch bs32_old bs32_off bs1_inbatch bs1_old bs1_off}; do
  case $m in
    bs32_*) a="--batch 32 --num-prompts 128 --input-len 256 --max-new-tokens 512" ;;
    bs1_*) a="--batch 1 --num-prompts ${BS1_PROMPTS:-6} --input-len 256 --max-new-tokens 256" ;;
  esac
  case $m in *_old) a="$a --disable-in-batch-jump-forward" ;; *_off) a="$a --disable-jump-forward" ;; esac
  timeout ${JSON_TIMEOUT:-150} python3 benchmarks/constrained/bench_json_offline.py --model-path /tmp/l8b --load-format dummy \
    $a --out "$OUT/json_$m.json" > "$OUT/json_$m.log" 2>&1
  echo "== $m:"; grep -E '"json_schema_vs|output_tok_s|ended_by|invalid|jump_forward_tokens|Error' "$OUT/json_$m.log" | head -8
done
[ "${SKIP_STEP:-0}" = 1 ] || { timeout 150 python3 benchmarks/constrained/bench_structured.py --model /tmp/l8b \
  --load-format dummy --device cuda --out "$OUT/structured.json" > "$OUT/structured.log" 2>&1;
  grep -E "ratio|speedup|ms_per_decode|Error" "$OUT/structured.log" | head -12; }
