"""Image QA serving benchmark: N prompts, each with one image, through `sglang.Engine`.

Every request streams, so its time to first token is measured where a client sees it; all are
submitted at once. Two image modes: `distinct` (every prompt has its own picture) and `same` (one
picture repeated, which the radix cache and the encoder cache can reuse). Run with and without
`--disable-radix-cache` to see what prefix caching of image positions buys.

    python benchmarks/multimodal/bench_image_qa.py --model-path DIR --load-format dummy \
        --num-prompts 64 --image-size 448 --output-len 128 --image-mode same --result-file out.json

On CUDA the record also carries the card's own measured limits (copy bandwidth, bf16 matmul rate)
so numbers from different cards can be read against their floors.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any, Dict, List

import numpy as np
import torch
from PIL import Image

from sglang.benchmark.card_limits import card_limits
from sglang.benchmark.result_file import result_header, write_result

QUESTION = "Describe this picture in detail, then list every object you can see."


def make_images(n: int, size: int, mode: str, seed: int = 0) -> List[Image.Image]:
    """Random-noise RGB pictures (content does not matter for dummy weights; size does)."""
    rng = np.random.default_rng(seed)
    count = 1 if mode == "same" else n
    pictures = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]
    return [pictures[i % count] for i in range(n)]


async def _one(engine: Any, prompt: str, image: Image.Image, params: dict) -> Dict[str, float]:
    start = time.perf_counter()
    ttft, last = None, None
    stream = await engine.async_generate(prompt, params, image_data=image, stream=True)
    async for out in stream:
        if ttft is None:
            ttft = time.perf_counter() - start
        last = out
    meta = last["meta_info"]
    return {"ttft_s": ttft, "latency_s": time.perf_counter() - start, "prompt_tokens": meta["prompt_tokens"],
            "completion_tokens": meta["completion_tokens"], "cached_tokens": meta.get("cached_tokens", 0)}


async def _run_all(engine: Any, prompt: str, images: List[Image.Image], params: dict) -> List[Dict[str, float]]:
    return list(await asyncio.gather(*[_one(engine, prompt, img, params) for img in images]))


def run(engine: Any, images: List[Image.Image], output_len: int) -> Dict[str, Any]:
    mark = engine.get_model_info().get("image_token") or ""
    prompt = f"{mark}{QUESTION}"
    params = {"temperature": 0.0, "max_new_tokens": output_len, "ignore_eos": True}
    start = time.perf_counter()
    rows = asyncio.run(_run_all(engine, prompt, images, params))
    wall = time.perf_counter() - start
    ttfts = sorted(r["ttft_s"] for r in rows)
    out_tokens = sum(r["completion_tokens"] for r in rows)
    return {
        "requests": len(rows), "wall_s": round(wall, 3),
        "requests_per_s": round(len(rows) / wall, 3),
        "output_tok_per_s": round(out_tokens / wall, 1),
        "ttft_mean_s": round(statistics.mean(ttfts), 4),
        "ttft_p50_s": round(ttfts[len(ttfts) // 2], 4),
        "ttft_p99_s": round(ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))], 4),
        "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in rows), 1),
        "cached_tokens_mean": round(statistics.mean(r["cached_tokens"] for r in rows), 1),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--load-format", default="auto")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--image-mode", choices=("distinct", "same"), default="distinct")
    parser.add_argument("--disable-radix-cache", action="store_true")
    parser.add_argument("--context-length", type=int, default=None)
    parser.add_argument("--result-file", default=None)
    args = parser.parse_args(argv)
    from sglang.runtime.entrypoints.engine import Engine

    extra = {"context_length": args.context_length} if args.context_length else {}
    engine = Engine(model_path=args.model_path, load_format=args.load_format, device=args.device,
                    disable_radix_cache=args.disable_radix_cache, log_level="warning", **extra)
    try:
        images = make_images(args.num_prompts, args.image_size, args.image_mode)
        run(engine, make_images(2, args.image_size, "distinct", seed=99), 4)  # warm-up, other pictures
        engine.flush_cache()
        result = run(engine, images, args.output_len)
    finally:
        engine.shutdown()
    record = {**result_header("benchmarks/multimodal/bench_image_qa.py", args.device, argv),
              "model_path": args.model_path, "load_format": args.load_format, "image_mode": args.image_mode,
              "image_size": args.image_size, "radix_cache": not args.disable_radix_cache,
              "output_len": args.output_len, **result, "card": card_limits()}
    write_result(record, args.result_file)
    return record


if __name__ == "__main__":
    main()
