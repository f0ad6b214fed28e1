#!/usr/bin/env bash
# Second device call: structured-generation overhead and the RadixAttention on/off ratio through
# the HTTP server with bench_serving (generated-shared-prefix), Llama-3-8B shape, dummy weights.
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
python3 -m sglang.testing.tiny_model --shape llama-3-8b --out /tmp/l8b >/dev/null 2>&1
timeout 150 python3 benchmarks/constrained/bench_structured.py --model /tmp/l8b --load-format dummy --device cuda \
  --out "$OUT/structured.json" > "$OUT/structured.log" 2>&1; grep -E "ratio|speedup|output_tok_s|Error" "$OUT/structured.log" | head -12
: "${SKIP_GSP:=0}"
GSP="--dataset-name generated-shared-prefix --gsp-num-groups 8 --gsp-prompts-per-group 32 --gsp-system-prompt-len 2048 --gsp-question-len 128 --gsp-output-len 32 --flush-cache --disable-tqdm"
[ "$SKIP_GSP" = 1 ] || for mode in on off; do
  extra=""; [ $mode = off ] && extra="--disable-radix-cache"
  python3 -m sglang.launch_server --model-path /tmp/l8b --load-format dummy --port 30000 --log-level warning $extra \
    > "$OUT/server_$mode.log" 2>&1 &
  pid=$!
  for i in $(seq 1 120); do curl -sf localhost:30000/health >/dev/null && break; sleep 1; done
  timeout 150 python3 -m sglang.bench_serving --backend sglang --port 30000 $GSP --output-file "$OUT/gsp_$mode.jsonl" \
    2>&1 | grep -iE "throughput|ttft|duration|failed" | head -8
  kill $pid; wait $pid
done
