#!/usr/bin/env bash
# Issue 23's measurement (NGRAM on SmolLM2-135M-Instruct, real weights) on the GPU host. The GGUF
# (98 MB) is larger than what one device call may carry (64 MiB with the tree and wheels), so it
# travels in two parts over two calls on the same warm machine:
#   here:  head -c 46000000 $GGUF > .g1/a; tail -c +46000001 $GGUF > .g2/b   (.g1 .g2 ignored)
#   call 1 (carry .whl .g1):  cp .g1/a /tmp/smol_a; ...other work...
#   call 2 (carry .g2):       bash benchmarks/gpu/ngram_smollm2.sh $OUT
set -u
OUT=${1:-/tmp/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=.:${PYTHONPATH:-}
GGUF=/tmp/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$GGUF" ] || cat /tmp/smol_a .g2/b > "$GGUF" || exit 1
ls -la "$GGUF"
timeout 400 python3 benchmarks/speculative/bench_ngram.py --model-path "$GGUF" --device cuda --batch-sizes 32 \
  --out "$OUT/spec_ngram.json" 2>&1 | grep -v -i warn | tail -20
