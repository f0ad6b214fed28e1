"""Encode throughput of an embedding model through `Engine.encode` (prompt tokens per second).

    python benchmarks/embeddings/bench_encode.py --model-path DIR [--is-embedding] \
        [--load-format dummy] [--num-prompts 256] [--prompt-len 256] [--batch 64] [--device cuda] \
        [--in-process]

Random token ids (same seed each run), sent in batches of --batch; one warm-up batch first. Prints
one JSON line: prompts, tokens, seconds, prompts/s, tokens/s and the embedding size.
`--in-process` drives the scheduler directly (sglang.testing.scheduler_harness: no tokenizer
manager, detokenizer or ZMQ), which measures the model and scheduler alone.
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
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    run = _run_in_process if args.in_process else _run_engine
    seconds, dim = run(args)
    tokens = args.num_prompts * args.prompt_len
    print(json.dumps({"model_path": args.model_path, "prompts": args.num_prompts, "prompt_len": args.prompt_len,
                      "batch": args.batch, "in_process": args.in_process, "seconds": round(seconds, 3),
                      "prompts_per_s": round(args.num_prompts / seconds, 1),
                      "tokens_per_s": round(tokens / seconds, 1), "embedding_dim": dim}))


def _batches(args, vocab: int):
    rng = random.Random(0)
    prompts = [[rng.randrange(vocab) for _ in range(args.prompt_len)] for _ in range(args.num_prompts)]
    return [prompts[i:i + args.batch] for i in range(0, len(prompts), args.batch)]


def _run_engine(args):

    import sglang

    with sglang.Engine(model_path=args.model_path, is_embedding=args.is_embedding, load_format=args.load_format,
                       dtype=args.dtype, device=args.device, random_seed=0) as engine:
        batches = _batches(args, engine.get_model_info()["vocab_size"])
        dim = len(engine.encode(input_ids=batches[0])[0]["embedding"])  # warm-up
        start = time.perf_counter()
        for batch in batches:
            engine.encode(input_ids=batch)
        return time.perf_counter() - start, dim


def _run_in_process(args):
    from sglang.testing.scheduler_harness import SchedulerHarness

    h = SchedulerHarness(args.model_path, is_embedding=args.is_embedding, load_format=args.load_format,
                         dtype=args.dtype, device=args.device)
    batches = _batches(args, h.runner.vocab_size())

    def encode(batch, tag):
        for i, ids in enumerate(batch):
            h.submit(f"{tag}-{i}", input_ids=ids, params={"max_new_tokens": 0})
        return h.run_until_idle()[f"{tag}-0"].extra_meta["embedding"]

    dim = len(encode(batches[0], "warm"))
    start = time.perf_counter()
    for j, batch in enumerate(batches):
        encode(batch, str(j))
    if args.device != "cpu":
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - start, dim


if __name__ == "__main__":
    main()
