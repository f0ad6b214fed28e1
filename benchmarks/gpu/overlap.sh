#!/usr/bin/env bash
# One device call for overlap scheduling: its GPU tests (same tokens as the synchronous loop, no
# hidden device syncs), the rest of tests/gpu, then offline throughput with overlap on and off.
# Usage on the GPU host (after installing the carried wheels): bash benchmarks/gpu/overlap.sh "$OUT"
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
python3 -m sglang.testing.tiny_model --shape llama-3-8b --out /tmp/l8b >/dev/null 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
timeout 240 python3 -m pytest tests/gpu/test_overlap.py -q -rA -p no:cacheprovider 2>&1 | tee "$OUT/overlap_tests.log" | tail -30
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout 240 python3 -m pytest tests/gpu -q -x -p no:cacheprovider --ignore=tests/gpu/test_overlap.py 2>&1 \
    | tail -15 | tee "$OUT/gpu_tests.log"
fi
for mode in ${MODES:-on off}; do
  extra=""; [ "$mode" = off ] && extra="--disable-overlap-schedule"
  timeout 200 python3 -m sglang.bench_offline_throughput --model-path /tmp/l8b --load-format dummy \
    --dataset-name random --num-prompts "${NUM_PROMPTS:-2000}" --random-input-len 256 --random-output-len 256 \
    --random-range-ratio 1 --result-file "$OUT/offline_$mode.jsonl" --log-level warning $extra 2>&1 | tail -3
  echo "^ overlap $mode"
done
