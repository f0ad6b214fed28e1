"""Latency of one static batch, in-process: a ModelRunner without a scheduler process.

    python -m sglang.bench_one_batch --model-path M --load-format dummy \
        --batch-size 1 [8 ...] --input-len 128 [...] --output-len 128 [...] [--result-file F]

Every ServerArgs flag is accepted too. For each (batch size, input len, output len) it prefills
B random prompts of length I as one extend batch, then runs O - 1 greedy decode steps. The batch
is built with Req + ScheduleBatch + SamplingBatchInfo, so the measured path is the serving path:
host-side batch building, the forward (CUDA graphs for decode unless disabled) and sampling,
including the read of the sampled ids. A warm-up run of the same shapes comes first. Each phase
is timed with a device synchronize on both sides. Reported: prefill latency and tokens/s, median
decode ms/step and tokens/s, and the totals; `--result-file` gets one JSON line per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import statistics
import sys
import time
from datetime import datetime, timezone
from typing import Callable, List, Optional, Tuple

import torch

from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import KVResources, ScheduleBatch
from sglang.runtime.mem_cache.chunk_cache import ChunkCache
from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo
from sglang.runtime.sampling.sampling_params import SamplingParams
from sglang.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)

WARMUP_DECODE_STEPS = 8


# ---------------------------------------------------------------- driving a runner directly


def make_reqs(prompts: List[List[int]], max_new_tokens: int) -> List[Req]:
    """Greedy requests that ignore EOS (so every run decodes exactly max_new_tokens)."""
    reqs = []
    for i, ids in enumerate(prompts):
        params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, ignore_eos=True)
        params.normalize(None)
        req = Req(f"bench-{i}", ids, params, eos_token_ids=set(), seed=i)
        req.init_fill_ids()
        reqs.append(req)
    return reqs


def random_prompts(batch_size: int, input_len: int, vocab_size: int, seed: int) -> List[List[int]]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch_size, input_len), generator=gen).tolist()


class ForwardClock:
    """Device time of each model forward (CUDA events around it), read after the step's sync.
    Step time minus forward time is the host's share: batch building, sampling, the id read."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._pairs: List[Tuple[torch.cuda.Event, torch.cuda.Event]] = []

    def around(self, fn: Callable[[], object]) -> object:
        if not self.enabled:
            return fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        self._pairs.append((start, end))
        return out

    def take_seconds(self) -> List[float]:
        if self._pairs:
            torch.cuda.synchronize()
        out = [start.elapsed_time(end) / 1e3 for start, end in self._pairs]
        self._pairs = []
        return out


class BatchDriver:
    """Runs prefill and decode steps of a fixed list of requests on a ModelRunner, the way the
    scheduler does, without a scheduler (no prefix sharing: a ChunkCache owns nothing)."""

    def __init__(self, runner: ModelRunner):
        self.runner = runner
        cache = ChunkCache(runner.req_to_token_pool, runner.allocator)
        self.cache = cache
        self.res = KVResources(runner.req_to_token_pool, runner.allocator, runner.kv_pool, cache, runner.device)
        self.clock = ForwardClock(runner.device == "cuda")

    def sample(self, reqs: List[Req], logits: torch.Tensor) -> List[int]:
        """Greedy-sample the next token of each request from its logits row and append it."""
        info = SamplingBatchInfo.from_reqs(reqs, self.runner.vocab_size(), logits.device)
        ids = self.runner.sample(logits, info).tolist()  # the host read every serving step makes
        for req, token in zip(reqs, ids):
            req.output_ids.append(token)
        return ids

    def prefill(self, reqs: List[Req]) -> List[int]:
        batch = ScheduleBatch(reqs, ForwardMode.EXTEND, self.res)
        fb = batch.build_extend()
        batch.commit_extend()
        return self.sample(reqs, self.clock.around(lambda: self.runner.forward(fb)).next_token_logits)

    def decode(self, reqs: List[Req]) -> List[int]:
        batch = ScheduleBatch(reqs, ForwardMode.DECODE, self.res)
        fb = batch.build_decode()
        out = self.clock.around(lambda: self.runner.forward(fb))
        batch.commit_decode()
        return self.sample(reqs, out.next_token_logits)

    def decode_phases(self, reqs: List[Req]) -> Tuple[float, float, float]:
        """`decode`, timed by phase (seconds): build (batch + KV slots), forward (on CUDA only
        its launch), commit + sample (with the host read of the ids, which waits for the device)."""
        synchronize(self.runner.device)
        t0 = time.perf_counter()
        batch = ScheduleBatch(reqs, ForwardMode.DECODE, self.res)
        fb = batch.build_decode()
        t1 = time.perf_counter()
        out = self.runner.forward(fb)
        t2 = time.perf_counter()
        batch.commit_decode()
        self.sample(reqs, out.next_token_logits)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    def release(self, reqs: List[Req]) -> None:
        for req in reqs:
            self.cache.cache_finished_req(req)


# ---------------------------------------------------------------- timing


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str) -> Tuple[object, float]:
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


@dataclasses.dataclass
class OneBatchResult:
    batch_size: int
    input_len: int
    output_len: int
    prefill_latency: float  # s
    prefill_throughput: float  # input tok/s
    median_decode_latency: Optional[float]  # s per step (None when output_len == 1)
    median_decode_throughput: Optional[float]  # output tok/s during decode
    total_latency: float  # s
    overall_throughput: float  # (input + output) tok/s
    decode_steps: int
    prefill_forward_latency: Optional[float] = None  # s, device time of the forward alone (CUDA)
    median_decode_forward_latency: Optional[float] = None  # s, likewise per decode step


def run_once(runner: ModelRunner, bs: int, input_len: int, output_len: int, seed: int,
             decode_steps: Optional[int] = None) -> OneBatchResult:
    """Prefill then `decode_steps` (default output_len - 1) decode steps; memory freed after."""
    steps = output_len - 1 if decode_steps is None else decode_steps
    reqs = make_reqs(random_prompts(bs, input_len, runner.vocab_size(), seed), output_len)
    driver = BatchDriver(runner)
    try:
        _, prefill_s = timed(lambda: driver.prefill(reqs), runner.device)
        prefill_fwd = driver.clock.take_seconds()
        step_s = [timed(lambda: driver.decode(reqs), runner.device)[1] for _ in range(steps)]
        decode_fwd = driver.clock.take_seconds()
    finally:
        driver.release(reqs)
    median = statistics.median(step_s) if step_s else None
    total = prefill_s + sum(step_s)
    return OneBatchResult(
        batch_size=bs, input_len=input_len, output_len=output_len,
        prefill_latency=prefill_s, prefill_throughput=bs * input_len / prefill_s,
        median_decode_latency=median, median_decode_throughput=bs / median if median else None,
        total_latency=total, overall_throughput=bs * (input_len + 1 + steps) / total, decode_steps=steps,
        prefill_forward_latency=prefill_fwd[0] if prefill_fwd else None,
        median_decode_forward_latency=statistics.median(decode_fwd) if decode_fwd else None,
    )


def check_fits(runner: ModelRunner, bs: int, input_len: int, output_len: int) -> None:
    if bs > runner.max_running_requests:
        raise ValueError(f"--batch-size {bs} exceeds max running requests {runner.max_running_requests}; "
                         f"raise --max-running-requests")
    if input_len + output_len > runner.context_len:
        raise ValueError(f"--input-len + --output-len = {input_len + output_len} exceeds the context length "
                         f"{runner.context_len}; lower them or raise --context-length")
    if bs * (input_len + output_len) > runner.max_total_num_tokens:
        raise ValueError(f"{bs} x {input_len + output_len} tokens exceed the KV pool "
                         f"({runner.max_total_num_tokens} tokens); raise --mem-fraction-static or lower the sizes")


def bench(runner: ModelRunner, bs: int, input_len: int, output_len: int, seed: int) -> OneBatchResult:
    check_fits(runner, bs, input_len, output_len)
    # Warm-up on the same shapes: kernel compilation, cuBLAS heuristics, allocator growth.
    run_once(runner, bs, input_len, output_len, seed, decode_steps=min(output_len - 1, WARMUP_DECODE_STEPS))
    return run_once(runner, bs, input_len, output_len, seed + 1)


# ---------------------------------------------------------------- reporting and CLI


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def report_line(result: OneBatchResult) -> str:
    r = result
    lines = [f"batch {r.batch_size}, input {r.input_len}, output {r.output_len}",
             f"  prefill: {r.prefill_latency * 1e3:.2f} ms, {r.prefill_throughput:.0f} tok/s"
             + _device_share(r.prefill_forward_latency)]
    if r.median_decode_latency is not None:
        lines.append(f"  decode: median {r.median_decode_latency * 1e3:.3f} ms/step, "
                     f"{r.median_decode_throughput:.0f} tok/s over {r.decode_steps} steps"
                     + _device_share(r.median_decode_forward_latency))
    lines.append(f"  total: {r.total_latency:.3f} s, {r.overall_throughput:.0f} tok/s")
    return "\n".join(lines)


def _device_share(forward_s: Optional[float]) -> str:
    return "" if forward_s is None else f" (forward on device: {forward_s * 1e3:.3f} ms)"


def result_record(result: OneBatchResult, runner: ModelRunner, run_name: str, argv: List[str]) -> dict:
    sa = runner.server_args
    graphs = runner.graph_runner
    return {
        "run_name": run_name,
        **dataclasses.asdict(result),
        "device": device_name(runner.device),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "command": "python -m sglang.bench_one_batch " + " ".join(argv),
        "model_path": sa.model_path,
        "dtype": str(runner.dtype).replace("torch.", ""),
        "attention_backend": sa.attention_backend,
        "cuda_graph_max_bs": graphs.max_bs if graphs is not None else None,
        "max_total_num_tokens": runner.max_total_num_tokens,
        "quantization": sa.quantization,
        "kv_cache_dtype": sa.kv_cache_dtype,
        "weight_bytes": model_bytes(runner.model),  # what a bs1 decode step reads at least once
        "torch": torch.__version__,
    }


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters and buffers (quantized layers at their stored width);
    tied tensors count once."""
    seen = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def add_bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1], help="Batch sizes (each is a run).")
    parser.add_argument("--input-len", type=int, nargs="+", default=[1024], help="Prompt lengths in tokens.")
    parser.add_argument("--output-len", type=int, nargs="+", default=[16],
                        help="Output lengths in tokens (1 prefill-sampled + output_len - 1 decode steps).")
    parser.add_argument("--run-name", default="default", help="Name stored with each result line.")
    parser.add_argument("--result-file", default=None, help="Append one JSON line per run here.")
    parser.add_argument("--seed", type=int, default=1, help="Seed of the random prompts.")


def main(argv: Optional[List[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ServerArgs.add_cli_args(parser)
    add_bench_args(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    for name in ("batch_size", "input_len", "output_len"):
        if min(getattr(args, name)) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} values must be >= 1")
    runner = ModelRunner(ServerArgs.from_cli_args(args))
    records = []
    for bs, input_len, output_len in itertools.product(args.batch_size, args.input_len, args.output_len):
        result = bench(runner, bs, input_len, output_len, args.seed)
        print(report_line(result), flush=True)
        records.append(result_record(result, runner, args.run_name, argv))
        if args.result_file:
            with open(args.result_file, "a") as f:
                f.write(json.dumps(records[-1]) + "\n")
    return records


if __name__ == "__main__":
    main()
