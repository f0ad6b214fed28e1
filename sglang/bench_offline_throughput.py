"""Offline throughput: push a synthetic dataset through sglang.Engine and report tokens/s.

    python -m sglang.bench_offline_throughput --model-path M --load-format dummy \
        --dataset-name random --num-prompts 200 --random-input-len 256 --random-output-len 256 \
        --random-range-ratio 1 [--compare-transformers]

With --compare-transformers the same prompts also run through transformers' `generate`
(greedy, batched with left padding) in the same process, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time

from sglang.benchmark.datasets import add_dataset_args, random_requests, shared_prefix_requests
from sglang.runtime.models.gguf.files import pretrained_source
from sglang.runtime.server_args import ServerArgs


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    add_dataset_args(parser, num_prompts=100, random_input_len=256, random_output_len=64, gsp_num_groups=8,
                     gsp_system_prompt_len=512, gsp_question_len=64, gsp_output_len=64)
    parser.add_argument("--compare-transformers", action="store_true",
                        help="Also time transformers' generate on the same prompts (CPU comparison).")
    parser.add_argument("--hf-batch-size", type=int, nargs="+", default=[16],
                        help="Batch size(s) for the transformers baseline (left-padded generate); one run each.")
    parser.add_argument("--result-file", default=None, help="Append a JSON line with the results here.")


def build_requests(args, tokenizer, vocab_size: int):
    if args.dataset_name == "generated-shared-prefix":
        return shared_prefix_requests(tokenizer, vocab_size, args.gsp_num_groups, args.gsp_prompts_per_group,
                                      args.gsp_system_prompt_len, args.gsp_question_len, args.gsp_output_len,
                                      seed=args.seed)
    return random_requests(tokenizer, vocab_size, args.num_prompts, args.random_input_len, args.random_output_len,
                           args.random_range_ratio, seed=args.seed)


def run_sglang(server_args: ServerArgs, args) -> dict:
    from sglang.runtime.entrypoints.engine import Engine

    with Engine(server_args=server_args) as engine:
        reqs = build_requests(args, engine.tokenizer, engine.tokenizer_manager.vocab_size)
        params = [{"max_new_tokens": r.output_len, "temperature": 0, "ignore_eos": True} for r in reqs]
        # Warm-up outside the timed region (first-call allocations, lazy imports).
        engine.generate(input_ids=reqs[0].input_ids[:8], sampling_params={"max_new_tokens": 4})
        start = time.perf_counter()
        outs = engine.generate(input_ids=[r.input_ids for r in reqs], sampling_params=params)
        elapsed = time.perf_counter() - start
    out_tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
    in_tokens = sum(len(r.input_ids) for r in reqs)
    return {"requests": len(reqs), "elapsed_s": elapsed, "input_tokens": in_tokens, "output_tokens": out_tokens,
            "output_tok_s": out_tokens / elapsed, "total_tok_s": (in_tokens + out_tokens) / elapsed,
            "request_s": len(reqs) / elapsed, "_reqs": reqs}


def run_transformers(model_path: str, reqs, batch_size: int, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    source, gguf_kwargs = pretrained_source(model_path)  # a GGUF file: (its dir, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **gguf_kwargs).to(device).eval()
    pad = 0
    start = time.perf_counter()
    out_tokens = 0
    for i in range(0, len(reqs), batch_size):
        chunk = reqs[i : i + batch_size]
        width = max(len(r.input_ids) for r in chunk)
        ids = torch.tensor([[pad] * (width - len(r.input_ids)) + r.input_ids for r in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in chunk], device=device)
        new = max(r.output_len for r in chunk)
        with torch.inference_mode():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                 do_sample=False, pad_token_id=pad)
        out_tokens += sum(min(r.output_len, gen.shape[1] - width) for r in chunk)
    elapsed = time.perf_counter() - start
    return {"elapsed_s": elapsed, "output_tokens": out_tokens, "output_tok_s": out_tokens / elapsed}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ServerArgs.add_cli_args(parser)
    add_bench_args(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()))
    server_args = ServerArgs.from_cli_args(args)
    result = run_sglang(server_args, args)
    reqs = result.pop("_reqs")
    report = {"sglang": result, "server_args": {k: v for k, v in dataclasses.asdict(server_args).items()
                                                 if k in ("model_path", "device", "dtype", "load_format", "attention_backend",
                                                          "quantization", "kv_cache_dtype")}}
    print(f"sglang: {result['requests']} requests, {result['output_tokens']} output tokens in "
          f"{result['elapsed_s']:.2f} s -> {result['output_tok_s']:.1f} output tok/s, "
          f"{result['total_tok_s']:.1f} total tok/s")
    if args.compare_transformers:
        report["transformers"] = {}
        for bs in args.hf_batch_size:
            hf = run_transformers(server_args.model_path, reqs, bs, server_args.device)
            hf["ratio_sglang_over_hf"] = result["output_tok_s"] / hf["output_tok_s"]
            report["transformers"][f"batch_{bs}"] = hf
            print(f"transformers generate (batch {bs}): {hf['output_tok_s']:.1f} output tok/s; "
                  f"ratio sglang/transformers = {hf['ratio_sglang_over_hf']:.2f}x")
    if args.result_file:
        with open(args.result_file, "a") as f:
            f.write(json.dumps(report) + "\n")
    return report


if __name__ == "__main__":
    main()
