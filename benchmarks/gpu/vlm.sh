#!/usr/bin/env bash
# Vision-language models on the GPU in one device call: the VLM GPU tests (bf16 encoders, Engine on
# CUDA vs CPU, radix over images), the whole GPU suite for regressions, then the image QA benchmark
# on the Qwen2.5-VL-7B shape with dummy weights: 64 prompts x one 448x448 image, 128 output tokens;
# distinct images (radix on), one repeated image (radix on, then off).
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
quiet() { grep -v -i "warn\|loading\|^\s*$" | tail -${1:-6}; }
[ "${SKIP_TESTS:-0}" = 1 ] || {
  echo "== vlm gpu tests"
  timeout ${VLM_TEST_TIMEOUT:-200} python3 -m pytest tests/gpu/test_vlm_gpu.py tests/gpu/test_qwen2_vl_gpu.py \
    tests/gpu/test_gemma3_gpu.py -q -p no:cacheprovider -rf 2>&1 | tail -12 | tee "$OUT/vlm_gpu_tests.log"
  [ "${SKIP_SUITE:-0}" = 1 ] || echo "== gpu suite"
  [ "${SKIP_SUITE:-0}" = 1 ] || timeout ${SUITE_TIMEOUT:-200} python3 -m pytest tests/gpu -q -p no:cacheprovider -rf --deselect tests/gpu/test_vlm_gpu.py \
    2>&1 | tail -8 | tee "$OUT/gpu_suite.log"
}
python3 -m sglang.testing.shapes_vlm qwen2.5-vl-7b /tmp/q7 >/dev/null 2>&1
bench() {  # name mode extra...
  echo "== image qa $1"
  timeout ${BENCH_TIMEOUT:-110} python3 benchmarks/multimodal/bench_image_qa.py --model-path /tmp/q7 --load-format dummy \
    --num-prompts 64 --image-size 448 --output-len 128 --image-mode $2 --context-length 4096 \
    --result-file "$OUT/image_qa_$1.json" "${@:3}" 2>&1 | grep -E '"(requests_per_s|ttft_mean_s|ttft_p99_s|output_tok_per_s|cached_tokens_mean|copy_gbps|bf16_matmul_tflops)"|Error|error' | tail -9
}
bench distinct distinct
bench same same
bench same_noradix same --disable-radix-cache
