#!/usr/bin/env bash
# Structured generation on the GPU: JSON-schema vs unconstrained offline throughput at batch 32
# (jump-forward on and off) and the per-step cost of a length-bounded schema; Llama-3-8B shape,
# dummy weights.  Usage: SGLANG_BENCH_COMMIT=<commit> bash benchmarks/gpu/structured.sh OUT_DIR
# (the commit is read from git unless given: a tree copied to the GPU host may carry a stale .git)
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
python3 -m sglang.testing.tiny_model --shape llama-3-8b --out /tmp/l8b >/dev/null 2>&1
: "${JSON_ARGS:=--batch 32 --num-prompts 128 --input-len 256 --max-new-tokens 512}"
for jf in ${ORDER:-on off}; do
  extra=""; [ $jf = off ] && extra="--disable-jump-forward"
  timeout ${JSON_TIMEOUT:-240} python3 benchmarks/constrained/bench_json_offline.py --model-path /tmp/l8b --load-format dummy \
    $JSON_ARGS $extra --out "$OUT/json_offline_jf_$jf.json" > "$OUT/json_offline_jf_$jf.log" 2>&1
  echo "jump-forward $jf:"; grep -E '"json_schema_vs|"ratio"|output_tok_s|ended_by|invalid|jump_forward_tokens|mean_output|Error' \
    "$OUT/json_offline_jf_$jf.log" | head -14
done
[ "${SKIP_STEP:-0}" = 1 ] || { timeout 150 python3 benchmarks/constrained/bench_structured.py --model /tmp/l8b \
  --load-format dummy --device cuda --out "$OUT/structured.json" > "$OUT/structured.log" 2>&1;
  grep -E "ratio|speedup|ms_per_decode|Error" "$OUT/structured.log" | head -12; }
