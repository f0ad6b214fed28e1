"""The transformers fallback vs our native Llama on the GPU, real shape, dummy weights (bf16):
decode time per token at batch 1 and output throughput at batch 32.

    python benchmarks/gpu/bench_transformers_fallback.py --shape llama-3.2-1b --out result.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import sglang
from sglang.testing.tiny_model import main as tiny_model_main


def _measure(path: str, impl: str, new_tokens: int) -> dict:
    greedy = {"max_new_tokens": new_tokens, "temperature": 0, "ignore_eos": True}
    prompt = [[100 + i for i in range(64)]]
    with sglang.Engine(model_path=path, load_format="dummy", dtype="bfloat16", model_impl=impl,
                       random_seed=0, mem_fraction_static=0.5) as engine:
        engine.generate(input_ids=prompt, sampling_params={**greedy, "max_new_tokens": 8})  # warm-up
        t = time.perf_counter()
        engine.generate(input_ids=prompt, sampling_params=greedy)
        bs1 = (time.perf_counter() - t) / new_tokens
        batch = [[100 + i + j for i in range(64)] for j in range(32)]
        t = time.perf_counter()
        engine.generate(input_ids=batch, sampling_params=greedy)
        bs32 = 32 * new_tokens / (time.perf_counter() - t)
    return {"impl": impl, "bs1_ms_per_token": round(bs1 * 1e3, 2), "bs32_tokens_per_s": round(bs32, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="llama-3.2-1b")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    path = tempfile.mkdtemp(prefix="fallback-bench-")
    tiny_model_main(["--shape", args.shape, "--out", path])
    rows = [_measure(path, impl, args.new_tokens) for impl in ("sglang", "transformers")]
    result = {"shape": args.shape, "new_tokens": args.new_tokens, "prompt_len": 64, "dtype": "bfloat16", "rows": rows}
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
