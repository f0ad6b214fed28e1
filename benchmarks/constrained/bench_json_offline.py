"""Offline throughput with a JSON schema vs without, at a fixed running batch (Engine, in-process).

    python benchmarks/constrained/bench_json_offline.py --model-path M --load-format dummy \
        [--batch 32] [--num-prompts 128] [--input-len 256] [--max-new-tokens 512] [--out F.json]

Both runs push the same prompts through `sglang.Engine` with `--max-running-requests BATCH`,
sampling at temperature 1. The constrained run goes first; the unconstrained run then generates
exactly as many tokens per request as the constrained one did (`ignore_eos`), so the two runs
do the same model work and `json_schema_vs_unconstrained_ratio` is the ratio of output tokens/s.
Grammar compilation is warmed up outside the timed region (it is cached per schema), and the
pair of runs is repeated (`--repeats`, the last pass is reported): on a fresh machine the first
pass also pays one-off kernel compilation. Every
constrained output that ended by the grammar (not by length) must parse as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from sglang.benchmark.result_file import result_header, write_result

# A typical extraction schema; integers are bounded (an unbounded integer lets a random-weight
# model emit digits forever) and strings are free text, which ends when a quote is sampled.
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string"},
        "role": {"enum": ["engineer", "manager", "designer", "analyst"]},
        "skills": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string"},
    },
    "required": ["name", "age", "city", "role", "skills", "summary"],
}


def _timed(engine, prompts, params) -> tuple:
    start = time.perf_counter()
    outs = engine.generate(input_ids=prompts, sampling_params=params)
    return time.perf_counter() - start, outs


def run(args) -> dict:
    from sglang.benchmark.datasets import random_requests
    from sglang.runtime.entrypoints.engine import Engine

    schema = json.dumps(SCHEMA)
    engine_args = {"model_path": args.model_path, "load_format": args.load_format, "device": args.device,
                   "max_running_requests": args.batch, "grammar_backend": args.grammar_backend,
                   "random_seed": 0, "disable_jump_forward": args.disable_jump_forward,
                   "disable_in_batch_jump_forward": args.disable_in_batch_jump_forward}
    if args.max_total_tokens:
        engine_args["max_total_tokens"] = args.max_total_tokens
    with Engine(**engine_args) as engine:
        reqs = random_requests(engine.tokenizer, engine.tokenizer_manager.vocab_size, args.num_prompts,
                               args.input_len, args.max_new_tokens, 1.0, seed=1)
        prompts = [r.input_ids for r in reqs]
        warm = {"max_new_tokens": 8, "temperature": 1.0}
        engine.generate(input_ids=prompts[:2], sampling_params=[{**warm, "json_schema": schema}, warm])
        json_params = [{"max_new_tokens": args.max_new_tokens, "temperature": 1.0, "seed": i, "json_schema": schema}
                       for i in range(len(prompts))]
        passes = []
        for _ in range(args.repeats):  # the first pass of a fresh machine also JIT-compiles kernels
            json_s, json_outs = _timed(engine, prompts, json_params)
            lens = [o["meta_info"]["completion_tokens"] for o in json_outs]
            free_params = [{"max_new_tokens": n, "temperature": 1.0, "seed": i, "ignore_eos": True}
                           for i, n in enumerate(lens)]
            free_s, free_outs = _timed(engine, prompts, free_params)
            passes.append({"json_s": json_s, "free_s": free_s, "ratio": free_s / json_s})
    tokens = sum(lens)
    assert sum(o["meta_info"]["completion_tokens"] for o in free_outs) == tokens, "runs did different work"
    ended = [o for o in json_outs if o["meta_info"]["finish_reason"]["type"] == "stop"]
    invalid = 0
    for o in ended:
        try:
            json.loads(o["text"])
        except ValueError:
            invalid += 1
    return {
        "json_schema_vs_unconstrained_ratio": free_s / json_s,
        "json": {"elapsed_s": json_s, "output_tokens": tokens, "output_tok_s": tokens / json_s,
                 "ended_by_grammar": len(ended), "invalid_json": invalid,
                 "jump_forward_tokens": sum(o["meta_info"].get("jump_forward_tokens", 0) for o in json_outs)},
        "unconstrained": {"elapsed_s": free_s, "output_tokens": tokens, "output_tok_s": tokens / free_s},
        "mean_output_len": tokens / len(lens),
        "passes": passes,  # the reported numbers are the last pass's
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="checkpoint dir (default: the tiny test llama)")
    parser.add_argument("--load-format", default="auto")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--batch", type=int, default=32, help="--max-running-requests of the engine")
    parser.add_argument("--num-prompts", type=int, default=128)
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--grammar-backend", default="xgrammar", choices=["xgrammar", "fsm", "lark"])
    parser.add_argument("--disable-jump-forward", action="store_true")
    parser.add_argument("--disable-in-batch-jump-forward", action="store_true",
                        help="the old path: a jump re-prefills the request in a pass of its own")
    parser.add_argument("--max-total-tokens", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed passes (JSON then unconstrained each); the last one is reported")
    parser.add_argument("--out", default=None, help="write the JSON record here")
    args = parser.parse_args()
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.model_path is None:
        from sglang.testing.fixtures import tiny_model_dir

        args.model_path = tiny_model_dir("llama")
    results = run(args)
    record = {**result_header("benchmarks/constrained/bench_json_offline.py", args.device), "schema": SCHEMA, **results}
    write_result(record, args.out)

if __name__ == "__main__":
    main()
