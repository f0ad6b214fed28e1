"""Where one decode step's device time goes: per-kernel totals from torch.profiler (GPU).

    PYTHONPATH=. python benchmarks/gpu/profile_decode.py --model-path /tmp/l8b --load-format dummy \
        --batch-size 1 --input-len 128 --steps 20 [--out F]

Runs the decode loop of `bench_one_batch` (same batch building and sampling) eagerly, so every
kernel shows up in the trace, and groups kernel device time per step by name. The sum is the
pure kernel time; the CUDA-graph step time (measured after, with graphs on) minus that sum is
what launches and gaps cost. Weight bytes per step give the bandwidth floor to compare against.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
from typing import Dict, List

import torch

from sglang.bench_one_batch import BatchDriver, make_reqs, random_prompts
from sglang.benchmark.result_file import result_header, write_result
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.server_args import ServerArgs


def weight_bytes(runner: ModelRunner) -> int:
    """Bytes of parameters a decode step reads: all but the input embedding (a row gather)."""
    model = runner.model
    embed = model.model.embed_tokens.weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    tied = getattr(model, "tie_word_embeddings", False)
    return total if tied else total - embed.numel() * embed.element_size()


def kernel_table(prof: torch.profiler.profile, steps: int) -> List[dict]:
    totals: Dict[str, float] = collections.defaultdict(float)
    counts: Dict[str, int] = collections.defaultdict(int)
    for evt in prof.events():
        if evt.device_type == torch.autograd.DeviceType.CUDA:
            totals[evt.name] += evt.device_time_total if hasattr(evt, "device_time_total") else evt.cuda_time_total
            counts[evt.name] += 1
    rows = [{"kernel": name[:120], "us_per_step": round(us / steps, 2), "calls_per_step": counts[name] / steps}
            for name, us in totals.items()]
    return sorted(rows, key=lambda r: -r["us_per_step"])


def decode_steps(driver: BatchDriver, reqs, steps: int) -> None:
    for _ in range(steps):
        driver.decode(reqs)
    torch.cuda.synchronize()


def step_ms(driver: BatchDriver, reqs, steps: int) -> float:
    times = []
    for _ in range(steps):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        driver.decode(reqs)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def host_phases(driver: BatchDriver, reqs, steps: int) -> dict:
    """Median host seconds per phase of a graph decode step, as BatchDriver.decode runs it:
    build (batch + KV slots + the one H2D copy), launch (static-input copies + graph replay
    call), sample (sampling info + argmax launch + the blocking id read, which waits for the GPU)."""
    phases = collections.defaultdict(list)
    for _ in range(steps):
        for name, sec in zip(("build_ms", "launch_ms", "commit_sample_read_ms"), driver.decode_phases(reqs)):
            phases[name].append(sec * 1e3)
    return {name: round(statistics.median(v), 4) for name, v in phases.items()}


def profile(runner: ModelRunner, bs: int, input_len: int, steps: int) -> dict:
    reqs = make_reqs(random_prompts(bs, input_len, runner.vocab_size(), 1), 4 * steps + 16)
    driver = BatchDriver(runner)
    try:
        driver.prefill(reqs)
        decode_steps(driver, reqs, 8)  # warm-up: JIT, cuBLAS heuristics
        graph = runner.graph_runner
        runner.graph_runner = None  # eager, so each kernel is its own trace event
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            decode_steps(driver, reqs, steps)
        eager_ms = step_ms(driver, reqs, steps)
        runner.graph_runner = graph
        graph_ms = step_ms(driver, reqs, steps) if graph is not None else None
        phases = host_phases(driver, reqs, steps)
    finally:
        driver.release(reqs)
    table = kernel_table(prof, steps)
    kernel_us = sum(r["us_per_step"] for r in table)
    return {"kernels": table, "kernel_sum_ms": round(kernel_us / 1e3, 4), "eager_step_ms": round(eager_ms, 4),
            "graph_step_ms": None if graph_ms is None else round(graph_ms, 4), "host_phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ServerArgs.add_cli_args(parser)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="Decode steps profiled and timed.")
    parser.add_argument("--peak-gbps", type=float, default=4800.0, help="HBM bandwidth for the floor (H100 3350).")
    parser.add_argument("--out", default=None, help="Write the JSON record here.")
    args = parser.parse_args()
    runner = ModelRunner(ServerArgs.from_cli_args(args))
    result = profile(runner, args.batch_size, args.input_len, args.steps)
    wbytes = weight_bytes(runner)
    record = {**result_header("benchmarks/gpu/profile_decode.py", "cuda"), "batch_size": args.batch_size,
              "input_len": args.input_len, "weight_bytes": wbytes,
              "weight_floor_ms": round(wbytes / (args.peak_gbps * 1e9) * 1e3, 4), **result}
    print(f"graph step {result['graph_step_ms']} ms, kernel sum {result['kernel_sum_ms']} ms, "
          f"host phases {result['host_phases']}", file=sys.stderr)
    for row in result["kernels"][:25]:
        print(f"{row['us_per_step']:9.1f} us  x{row['calls_per_step']:<5g} {row['kernel']}", file=sys.stderr)
    write_result(record, args.out)


if __name__ == "__main__":
    main()
