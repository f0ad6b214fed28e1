#!/usr/bin/env bash
# One device call for what landed after the last GPU run (2026-12-07 session 29): the GPU tests of
# the rewritten INT4 kernels (GEMV with deferred scales, fused tl.dot GEMM, contiguous dequantize),
# the LoRA split-K shrink and LoRA base-model graphs, the FP8 batched-vs-alone tolerance, speculative
# decoding on CUDA (NGRAM, DRAFT, EAGLE chain and tree: session 30); then the
# issue-19 table (bf16 / FP8 / AWQ one_batch), the LoRA figures and the quantized-linear sweep.
# Usage on the GPU host: bash benchmarks/gpu/pending.sh OUT_DIR   (about 8 minutes on an H100)
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
timeout 210 python3 -m pytest tests/gpu/test_int4_gemm.py tests/gpu/test_fp8_gemm.py tests/gpu/test_lora_gpu.py \
  tests/gpu/test_gpu_fidelity.py::test_64_batched_greedy_equals_each_request_alone tests/gpu/test_speculative_gpu.py -q -p no:cacheprovider -rf \
  > "$OUT/pending_tests.txt" 2>&1
tail -3 "$OUT/pending_tests.txt"; grep -E "^FAILED" "$OUT/pending_tests.txt" | head
SKIP_TESTS=1 SKIP_FP8KV=1 SKIP_OFFLINE=${SKIP_OFFLINE:-1} OUTPUT_LEN=48 ONE_TIMEOUT=75 \
  SGLANG_BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null) timeout 260 bash benchmarks/gpu/quant.sh "$OUT" 2>&1 \
  | grep -E "decode|prefill|==|ratio"
timeout 110 python3 benchmarks/lora/bench_lora.py --model-path llama-3-8b --load-format dummy --device cuda \
  --num-adapters 8 --rank 16 --num-prompts 128 --repeats 2 --decode-tokens 64 --out "$OUT/lora.json" 2>&1 | tail -8
timeout 100 python3 benchmarks/kernels/bench_quant_gemm.py --rows 1 4 16 64 128 256 --sweep --out "$OUT/quant_gemm.json" \
  2>&1 | grep -v -i warn | tail -30
timeout 120 python3 benchmarks/speculative/bench_verify_cost.py --model-path llama-3-8b --load-format dummy --device cuda \
  --batch-sizes 1 8 --input-len 512 --out "$OUT/verify_cost.json" 2>&1 | grep -E "^bs|Error" | tail -4
