"""Where a CPU decode step's time goes, in-process (no scheduler process, no IPC).

    python benchmarks/cpu/profile_decode_cpu.py [--model-path F.gguf] [--batch-size 1 16] \
        [--input-len 40] [--steps 32] [--server-args "--dtype bfloat16"] [--out F]

For each batch size: median step time split into batch building, model forward and sampling
(the serving path's own pieces, driven as `bench_one_batch` drives them), then a torch.profiler
pass over the same steps grouped by op (self CPU time per step), with the bytes of weights one
step reads and the bandwidth that implies. The end-to-end gap to the Engine's single-stream time
per token (scheduler loop, IPC, detokenizer, tokenizer manager) is what this does not see; the
benchmark `bench_vs_llamacpp.py` measures that side.
"""

from __future__ import annotations

import argparse
import collections
import shlex
import statistics
import sys
from typing import Dict, List

import torch

from sglang.bench_one_batch import BatchDriver, make_reqs, random_prompts
from sglang.benchmark.result_file import result_header, write_result
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.server_args import ServerArgs


def step_bytes(runner: ModelRunner) -> int:
    """Bytes of parameters and buffers one decode step reads: everything but the input embedding
    (a row gather), unless it doubles as the (tied) output projection."""
    model = runner.model
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    embed = model.model.embed_tokens
    embed_bytes = sum(t.numel() * t.element_size() for t in [*embed.parameters(), *embed.buffers()])
    return total if getattr(model, "tie_word_embeddings", False) else total - embed_bytes


def split_step(driver: BatchDriver, reqs, steps: int) -> Dict[str, float]:
    """Median ms of build / forward / sample over `steps` decode steps."""
    parts: Dict[str, List[float]] = collections.defaultdict(list)
    for _ in range(steps):
        phases = driver.decode_phases(reqs)
        for key, value in zip(("build_ms", "forward_ms", "sample_ms", "step_ms"), (*phases, sum(phases))):
            parts[key].append(value * 1e3)
    return {k: round(statistics.median(v), 3) for k, v in parts.items()}


def op_table(driver: BatchDriver, reqs, steps: int, top: int) -> List[dict]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            driver.decode(reqs)
    rows = []
    for evt in prof.key_averages():
        rows.append({"op": evt.key[:80], "self_ms_per_step": round(evt.self_cpu_time_total / 1e3 / steps, 3),
                     "calls_per_step": round(evt.count / steps, 1)})
    rows.sort(key=lambda r: -r["self_ms_per_step"])
    return rows[:top]


def profile_batch(runner: ModelRunner, bs: int, input_len: int, steps: int, top: int) -> dict:
    driver = BatchDriver(runner)
    reqs = make_reqs(random_prompts(bs, input_len, runner.vocab_size(), seed=bs), max_new_tokens=3 * steps + 16)
    driver.prefill(reqs)
    for _ in range(4):
        driver.decode(reqs)
    split = split_step(driver, reqs, steps)
    table = op_table(driver, reqs, steps, top)
    driver.release(reqs)
    nbytes = step_bytes(runner)
    return {"batch_size": bs, **split, "tok_s_in_process": round(bs * 1e3 / split["step_ms"], 1),
            "weight_MB_per_step": round(nbytes / 1e6, 1),
            "forward_GBps_of_weights": round(nbytes / (split["forward_ms"] / 1e3) / 1e9, 2), "ops": table}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None, help="default: the cached SmolLM2-135M-Instruct GGUF")
    p.add_argument("--batch-size", type=int, nargs="+", default=[1, 16])
    p.add_argument("--input-len", type=int, default=40)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--server-args", default="", help="extra server flags, e.g. '--dtype bfloat16'")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.model_path is None:
        from sglang.testing.models import smollm2_gguf_path

        args.model_path = str(smollm2_gguf_path(fetch=False))
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    ns = parser.parse_args(["--model-path", args.model_path, "--device", "cpu", "--random-seed", "0",
                            "--context-length", "2048", *shlex.split(args.server_args)])
    server_args = ServerArgs.from_cli_args(ns)
    runner = ModelRunner(server_args)
    record = {**result_header("benchmarks/cpu/profile_decode_cpu.py", "cpu"), "torch_threads": torch.get_num_threads(),
              "server_args": args.server_args,
              "runs": [profile_batch(runner, bs, args.input_len, args.steps, args.top) for bs in args.batch_size]}
    write_result(record, args.out)


if __name__ == "__main__":
    sys.exit(main())
