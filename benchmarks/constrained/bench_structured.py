"""Structured-generation cost and jump-forward gain, measured through the scheduler in-process.

    python benchmarks/constrained/bench_structured.py [--model DIR] [--backend xgrammar] [--out F.json]

1. Decode step time at batch 32, unconstrained vs a JSON schema (both produce long outputs).
2. End-to-end time of a JSON-extraction regex workload (1 request, then the full batch) with and
   without jump-forward, plus the decode steps each needed.
"""

from __future__ import annotations

import argparse
import json
import time


from sglang.benchmark.result_file import result_header, write_result
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness

SCHEMA = json.dumps({"type": "object", "properties": {
    "title": {"type": "string", "minLength": 20, "maxLength": 40},
    "body": {"type": "string", "minLength": 20, "maxLength": 40}}, "required": ["title", "body"]})
EXTRACTION = (r'\{"name": "[a-z]{1,8}", "age": [0-9]{1,2}, "city": "(Paris|London|Tokyo|Berlin)", '
              r'"employed": (true|false), "department": "(engineering|sales|research)"\}')


def timed_run(h: SchedulerHarness, n: int, params: dict, tag: str) -> dict:
    for i in range(n):
        h.submit(f"{tag}{i}", text=f"Record {i}:", params={**params, "seed": i})
    before = dict(h.scheduler.stats)
    start = time.perf_counter()
    decode_time = 0.0
    while h.scheduler.has_work():
        t = time.perf_counter()
        steps = h.scheduler.stats["decode_steps"]
        h.step()
        if h.scheduler.stats["decode_steps"] > steps:
            decode_time += time.perf_counter() - t
    elapsed = time.perf_counter() - start
    decode_steps = h.scheduler.stats["decode_steps"] - before["decode_steps"]
    out_tokens = sum(len(h.results[f"{tag}{i}"].output_ids) for i in range(n))
    return {"elapsed_s": elapsed, "decode_steps": decode_steps, "output_tokens": out_tokens,
            "output_tok_s": out_tokens / elapsed,
            "ms_per_decode_step": 1e3 * decode_time / max(decode_steps, 1),
            "forward_steps": h.scheduler.stats["forward_steps"] - before["forward_steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint dir (default: tiny llama)")
    parser.add_argument("--backend", default="xgrammar", choices=["xgrammar", "fsm"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default=None, help="write the JSON result here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--load-format", default="auto")
    args = parser.parse_args()
    model = args.model or tiny_model_dir("llama")
    opts = {"device": args.device, "load_format": args.load_format}
    h = SchedulerHarness(model, grammar_backend=args.backend, **opts)
    timed_run(h, 4, {"max_new_tokens": 8}, "warm")
    free = timed_run(h, args.batch, {"max_new_tokens": 64, "min_new_tokens": 64, "temperature": 1.0,
                                     "ignore_eos": True}, "free")
    constrained = timed_run(h, args.batch, {"max_new_tokens": 128, "temperature": 1.0, "json_schema": SCHEMA}, "json")
    results = {"unconstrained": free, "json_schema": constrained,
               "json_vs_unconstrained_step_ratio": free["ms_per_decode_step"] / constrained["ms_per_decode_step"]}
    # Jump-forward is taken only when it pays for the batch's extra forward pass (forced tokens
    # >= running requests): measured alone (latency) and in the full batch.
    for batch in sorted({1, args.batch}):
        jf = {}
        for disable in (False, True):
            h.scheduler.tree_cache.reset()  # hand the model runner (and its KV pool) to the next harness
            h = SchedulerHarness(model, runner=h.runner, grammar_backend=args.backend,
                                 disable_jump_forward=disable, **opts)
            timed_run(h, 2, {"max_new_tokens": 8, "regex": EXTRACTION}, "warm")
            jf["off" if disable else "on"] = timed_run(h, batch, {"max_new_tokens": 128, "temperature": 1.0,
                                                                  "regex": EXTRACTION}, "x")
        results[f"jump_forward_batch_{batch}"] = {**jf, "speedup": jf["off"]["elapsed_s"] / jf["on"]["elapsed_s"]}
    record = {**result_header("benchmarks/constrained/bench_structured.py", args.device),
              "model": "tiny llama (2 layers, hidden 64)" if args.model is None else args.model,
              "backend": args.backend, "batch": args.batch, "results": results}
    write_result(record, args.out)

if __name__ == "__main__":
    main()
