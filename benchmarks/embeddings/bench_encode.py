"""Encode throughput of an embedding model through `Engine.encode` (prompt tokens per second).

    python benchmarks/embeddings/bench_encode.py --model-path DIR [--is-embedding] \
        [--load-format dummy] [--num-prompts 256] [--prompt-len 256] [--batch 64] [--device cuda]

Random token ids (same seed each run), sent in batches of --batch; one warm-up batch first. Prints
one JSON line: prompts, tokens, seconds, prompts/s, tokens/s and the embedding size.
"""

from __future__ import annotations

import argparse
import json
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--is-embedding", action="store_true")
    parser.add_argument("--load-format", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-prompts", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    import sglang

    with sglang.Engine(model_path=args.model_path, is_embedding=args.is_embedding, load_format=args.load_format,
                       dtype=args.dtype, device=args.device, random_seed=0) as engine:
        vocab = engine.get_model_info()["vocab_size"]
        rng = random.Random(0)
        prompts = [[rng.randrange(vocab) for _ in range(args.prompt_len)] for _ in range(args.num_prompts)]
        batches = [prompts[i:i + args.batch] for i in range(0, len(prompts), args.batch)]
        dim = len(engine.encode(input_ids=batches[0])[0]["embedding"])  # warm-up
        start = time.perf_counter()
        for batch in batches:
            engine.encode(input_ids=batch)
        seconds = time.perf_counter() - start
    tokens = args.num_prompts * args.prompt_len
    print(json.dumps({"model_path": args.model_path, "prompts": args.num_prompts, "prompt_len": args.prompt_len,
                      "batch": args.batch, "seconds": round(seconds, 3),
                      "prompts_per_s": round(args.num_prompts / seconds, 1),
                      "tokens_per_s": round(tokens / seconds, 1), "embedding_dim": dim}))


if __name__ == "__main__":
    main()
