"""Multi-LoRA serving cost: offline throughput with N random rank-R adapters uniformly mixed vs
the base model alone, and bs1 decode time with vs without an adapter.

    python benchmarks/lora/bench_lora.py --model-path llama-3-8b --load-format dummy --device cuda \
        --num-adapters 8 --rank 16 --out benchmarks/results/lora_h100.json

--model-path is a checkpoint directory or a shape name of sglang.testing.shapes (e.g. llama-3-8b,
config only: use --load-format dummy). The adapters are written in PEFT's layout into a temporary
directory from the base config's shapes (all seven projections, random weights).

Runs, one engine after the other, same prompts (random ids, greedy, ignore_eos):
- plain: an engine without LoRA, base model only (the reference);
- lora: an engine with the N adapters: all requests on the base model, then requests mixed
  uniformly over the adapters (request i uses adapter i % N).
bs1 decode: one prompt, ms per output token after the first (decode time of --decode-tokens minus a
1-token run, divided by the extra tokens), with and without an adapter, on the LoRA engine, and on
the plain engine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from typing import List, Optional

import torch


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", required=True)
    p.add_argument("--load-format", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--num-adapters", type=int, default=8)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--max-loras-per-batch", type=int, default=None, help="default: --num-adapters")
    p.add_argument("--num-prompts", type=int, default=256)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=128, help="bs1 output tokens")
    p.add_argument("--repeats", type=int, default=3, help="bs1 runs per configuration (the median is kept)")
    p.add_argument("--extra", default="{}", help="JSON of extra Engine kwargs for both engines")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p.parse_args(argv)


def resolve_model(path: str) -> str:
    if os.path.isdir(path):
        return path
    from sglang.testing.fixtures import shape_model_dir

    return shape_model_dir(path)


def make_adapters(model_dir: str, n: int, rank: int, root: str) -> List[str]:
    from sglang.testing.tiny_lora import write_dummy_adapter

    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    return [f"d{i}=" + write_dummy_adapter(config, os.path.join(root, f"d{i}"), r=rank, seed=i) for i in range(n)]


def prompts(vocab: int, n: int, length: int, seed: int = 0) -> List[List[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(10, vocab - 1) for _ in range(length)] for _ in range(n)]


def throughput(engine, ids: List[List[int]], output_len: int, loras) -> dict:
    params = {"max_new_tokens": output_len, "temperature": 0.0, "ignore_eos": True}
    engine.generate(input_ids=ids[0][:16], sampling_params={"max_new_tokens": 4},
                    lora_path=loras[0] if loras else None)  # warm-up
    start = time.perf_counter()
    outs = engine.generate(input_ids=ids, sampling_params=params, lora_path=loras)
    elapsed = time.perf_counter() - start
    out_tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
    return {"elapsed_s": round(elapsed, 3), "output_tokens": out_tokens, "output_tok_s": round(out_tokens / elapsed, 1)}


def decode_ms(engine, ids: List[int], tokens: int, lora: Optional[str], repeats: int) -> float:
    def run(n: int) -> float:
        start = time.perf_counter()
        engine.generate(input_ids=ids, sampling_params={"max_new_tokens": n, "temperature": 0.0, "ignore_eos": True},
                        lora_path=lora)
        return time.perf_counter() - start

    run(4)  # warm-up
    times = sorted((run(tokens) - run(1)) / (tokens - 1) * 1e3 for _ in range(repeats))
    return round(times[len(times) // 2], 3)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import sglang

    model = resolve_model(args.model_path)
    extra = json.loads(args.extra)
    common = dict(model_path=model, load_format=args.load_format, device=args.device, dtype=args.dtype,
                  random_seed=0, **extra)
    results: dict = {"model": args.model_path, "num_adapters": args.num_adapters, "rank": args.rank,
                     "num_prompts": args.num_prompts, "input_len": args.input_len, "output_len": args.output_len,
                     "host": platform.node(), "torch": torch.__version__}
    if torch.cuda.is_available():
        results["gpu"] = torch.cuda.get_device_name()
    with sglang.Engine(**common) as eng:
        vocab = eng.tokenizer_manager.vocab_size
        ids = prompts(vocab, args.num_prompts, args.input_len)
        results["plain_base"] = throughput(eng, ids, args.output_len, None)
        results["plain_decode_ms"] = decode_ms(eng, ids[0], args.decode_tokens, None, args.repeats)
    with tempfile.TemporaryDirectory() as root:
        adapters = make_adapters(model, args.num_adapters, args.rank, root)
        names = [a.split("=", 1)[0] for a in adapters]
        with sglang.Engine(**common, lora_paths=adapters, max_lora_rank=args.rank,
                           max_loras_per_batch=args.max_loras_per_batch or args.num_adapters) as eng:
            results["lora_base"] = throughput(eng, ids, args.output_len, None)
            mixed = [names[i % len(names)] for i in range(len(ids))]
            results["lora_mixed"] = throughput(eng, ids, args.output_len, mixed)
            results["lora_decode_base_ms"] = decode_ms(eng, ids[0], args.decode_tokens, None, args.repeats)
            results["lora_decode_adapter_ms"] = decode_ms(eng, ids[0], args.decode_tokens, names[0], args.repeats)
    base_tps = results["plain_base"]["output_tok_s"]
    results["mixed_vs_plain_throughput"] = round(results["lora_mixed"]["output_tok_s"] / base_tps, 3)
    results["mixed_vs_lora_base_throughput"] = round(
        results["lora_mixed"]["output_tok_s"] / results["lora_base"]["output_tok_s"], 3)
    results["decode_adapter_vs_plain"] = round(results["lora_decode_adapter_ms"] / results["plain_decode_ms"], 3)
    results["decode_adapter_vs_lora_base"] = round(
        results["lora_decode_adapter_ms"] / results["lora_decode_base_ms"], 3)
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
