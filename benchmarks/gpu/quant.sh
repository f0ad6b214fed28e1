#!/usr/bin/env bash
# Issue 19 in one device call: the card's limits, the quantization GPU tests, then bench_one_batch
# on the Llama-3-8B shape (dummy weights) in bf16, online FP8, AWQ INT4 and bf16 with an FP8 KV
# cache at bs1 and bs128, offline throughput bf16 vs FP8, and the table (gpu_table.py).
# Usage on the GPU host: bash benchmarks/gpu/quant.sh OUT_DIR
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
quiet() { grep -v -i "warn\|loading\|INFO\|^\s*$" | tail -${1:-4}; }
python3 -m sglang.benchmark.card_limits --out "$OUT/card.json"
python3 -m sglang.testing.tiny_model --shape llama-3-8b --out /tmp/l8b >/dev/null 2>&1
cp -r /tmp/l8b /tmp/l8b_awq && python3 - <<'PY'
import json
p = "/tmp/l8b_awq/config.json"; c = json.load(open(p))
c["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
json.dump(c, open(p, "w"))
PY
[ "${SKIP_TESTS:-0}" = 1 ] || timeout ${TEST_TIMEOUT:-150} python3 -m pytest tests/gpu/test_fp8_gemm.py tests/gpu/test_int4_gemm.py \
  tests/gpu/test_fused_moe_gpu.py -q -p no:cacheprovider -rf 2>&1 | tail -15 | tee "$OUT/quant_tests.log"
one() {  # run-name model extra...
  echo "== one_batch $1"
  timeout ${ONE_TIMEOUT:-100} python3 -m sglang.bench_one_batch --model-path $2 --load-format dummy --batch-size 1 128 \
    --input-len 128 --output-len ${OUTPUT_LEN:-64} --run-name $1 --result-file "$OUT/one_batch.jsonl" "${@:3}" 2>&1 | quiet 7
}
one bf16 /tmp/l8b
one fp8 /tmp/l8b --quantization fp8
one awq /tmp/l8b_awq
[ "${SKIP_FP8KV:-0}" = 1 ] || one fp8kv /tmp/l8b --kv-cache-dtype fp8_e4m3
[ "${SKIP_OFFLINE:-0}" = 1 ] || for q in bf16 fp8; do
  extra=(); [ $q = fp8 ] && extra=(--quantization fp8)
  echo "== offline $q"
  timeout ${OFFLINE_TIMEOUT:-120} python3 -m sglang.bench_offline_throughput --model-path /tmp/l8b --load-format dummy \
    --dataset-name random --num-prompts ${NUM_PROMPTS:-1000} --random-input-len 256 --random-output-len 256 \
    --random-range-ratio 1 --result-file "$OUT/offline.jsonl" --log-level warning "${extra[@]}" 2>&1 | tail -2
done
python3 benchmarks/quantization/gpu_table.py --raw "$OUT" --out "$OUT/quant_table.json" --commit "${SGLANG_BENCH_COMMIT:-}"
