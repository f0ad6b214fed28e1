#!/usr/bin/env bash
# Decode fast-path check in one device call: per-kernel profile of 8B bs1, the issue-7
# bench_one_batch targets (8B bs1 / bs128 / prefill 1k, 1B and 0.5B bs1), offline throughput,
# then the GPU tests and three repeats of the overlap tests (failures kept with -rf).
# ATTENTION_BACKEND=flashinfer benchmarks that backend (carry .fi from benchmarks/gpu/pack_flashinfer.sh).
set -u
BACKEND=(${ATTENTION_BACKEND:+--attention-backend "$ATTENTION_BACKEND"})
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
for shape in llama-3-8b llama-3.2-1b qwen2.5-0.5b; do
  python3 -m sglang.testing.tiny_model --shape $shape --out /tmp/$shape >/dev/null 2>&1
done
quiet() { grep -v -i "warn\|loading\|^\s*$" | tail -${1:-4}; }
[ "${SKIP_PROFILE:-0}" = 1 ] || {
  echo "== profile llama-3-8b bs1"
  timeout 120 python3 benchmarks/gpu/profile_decode.py --model-path /tmp/llama-3-8b --load-format dummy \
    --batch-size 1 --input-len 128 --steps 20 --out "$OUT/profile_llama-3-8b.json" "${BACKEND[@]}" 2>&1 >/dev/null | quiet 14
}
one() {  # shape bs in out
  echo "== one_batch $1 bs$2 in$3 out$4"
  timeout 90 python3 -m sglang.bench_one_batch --model-path /tmp/$1 --load-format dummy --batch-size $2 \
    --input-len $3 --output-len $4 --result-file "$OUT/one_batch.jsonl" "${BACKEND[@]}" 2>&1 | quiet 3
}
one llama-3-8b 1 128 128
one llama-3-8b 128 128 8
one llama-3-8b 16 1024 1
one llama-3.2-1b 1 128 128
one qwen2.5-0.5b 1 128 128
[ "${SKIP_OFFLINE:-0}" = 1 ] || {
  echo "== offline 2000x256/256"
  timeout 150 python3 -m sglang.bench_offline_throughput --model-path /tmp/llama-3-8b --load-format dummy \
    --dataset-name random --num-prompts 2000 --random-input-len 256 --random-output-len 256 \
    --random-range-ratio 1 "${BACKEND[@]}" 2>&1 | grep -i "throughput\|tok/s\|error" | tail -4
}
[ "${SKIP_TESTS:-0}" = 1 ] && exit 0
echo "== gpu tests"
timeout ${TEST_TIMEOUT:-150} python3 -m pytest tests/gpu -q -x -p no:cacheprovider -rf 2>&1 | tail -8 | tee "$OUT/gpu_tests.log"
for i in $(seq 1 ${OVERLAP_REPEATS:-2}); do
  timeout 90 python3 -m pytest tests/gpu/test_overlap.py -q -p no:cacheprovider -rf 2>&1 \
    | grep -E "passed|failed|FAILED|Error" | cut -c1-1500 | tee -a "$OUT/overlap_repeats.log"
done
