#!/usr/bin/env bash
# Issue 20 in one device call: the MoE kernel vs its twin (layer level, active-expert bandwidth),
# bench_one_batch on the Mixtral-8x7B shape (needs ~94 GB: H200 only; skipped on smaller cards) and
# the DeepSeek-V2-Lite shape (MLA) at bs1 and bs64, Mixtral offline throughput, then the whole GPU
# test suite.  Usage on the GPU host: bash benchmarks/gpu/moe.sh OUT_DIR
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
quiet() { grep -v -i "warn\|loading\|INFO\|^\s*$" | tail -${1:-4}; }
[ "${SKIP_KERNEL:-0}" = 1 ] || timeout 150 python3 benchmarks/kernels/bench_fused_moe.py --shape mixtral-8x7b --shape deepseek-v2-lite \
  --batch 1 --batch 64 --batch 512 ${MOE_SWEEP:+--sweep} --out "$OUT/fused_moe.json" 2>&1 | quiet 8
for s in mixtral-8x7b deepseek-v2-lite; do python3 -m sglang.testing.tiny_model --shape $s --out /tmp/$s >/dev/null 2>&1; done
gib=$(python3 -c "import torch; print(torch.cuda.get_device_properties(0).total_memory >> 30)")
one() {  # model extra...
  echo "== one_batch $1"
  timeout ${ONE_TIMEOUT:-150} python3 -m sglang.bench_one_batch --model-path /tmp/$1 --load-format dummy --batch-size 1 64 \
    --input-len 128 --output-len 64 --run-name $1 --result-file "$OUT/moe_one_batch.jsonl" "${@:2}" 2>&1 | quiet 7
}
[ "${SKIP_DSV2:-0}" = 1 ] || one deepseek-v2-lite
if [ "${SKIP_MIXTRAL:-0}" = 1 ]; then
  echo "== mixtral-8x7b skipped (SKIP_MIXTRAL=1)"
elif [ "$gib" -ge 120 ]; then
  one mixtral-8x7b --mem-fraction-static 0.9
  [ "${SKIP_OFFLINE:-0}" = 1 ] || timeout 150 python3 -m sglang.bench_offline_throughput --model-path /tmp/mixtral-8x7b --load-format dummy \
    --dataset-name random --num-prompts ${NUM_PROMPTS:-500} --random-input-len 256 --random-output-len 256 \
    --random-range-ratio 1 --mem-fraction-static 0.9 --result-file "$OUT/moe_offline.jsonl" --log-level warning 2>&1 \
    | sed 's/^/offline mixtral-8x7b: /' | tail -2
else
  echo "== mixtral-8x7b skipped: ${gib} GiB card"
fi
[ "${SKIP_SUITE:-0}" = 1 ] || timeout ${SUITE_TIMEOUT:-240} python3 -m pytest tests/gpu -q -p no:cacheprovider -rf 2>&1 \
  | tail -15 | tee "$OUT/gpu_suite.log"
