"""Decode forward passes captured as CUDA graphs, one per batch size, replayed with padding.

A decode step of a large model is hundreds of small kernel launches; at small batch sizes the
host cannot launch them as fast as the GPU runs them. A graph replays the whole step with one
launch. Graphs are captured for a fixed list of batch sizes (`capture_batch_sizes`); a batch is
padded up to the next captured size. Padded rows point at a spare req_to_token row whose entries
are 0, with seq_len 1 and out_cache_loc 0: they read and write only KV slot 0, which the
allocator never hands out, and their logits are dropped.

Inputs live in static buffers the graphs read at replay; the attention backend keeps its own
static metadata (`init_cuda_graph_state` / `init_forward_metadata_capture/replay`). All graphs
share one memory pool, captured largest first so smaller graphs reuse its blocks, and write
their logits into one static [max_bs, vocab] buffer, so memory does not grow with the number
of captured sizes. Sampling runs after replay, outside the graph.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence

import torch

from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode

if TYPE_CHECKING:
    from sglang.runtime.model_executor.model_runner import ModelRunner

logger = logging.getLogger(__name__)

_GiB = 1 << 30
SMALL_BATCH_SIZES = (1, 2, 4, 8, 12, 16)
LARGE_BATCH_STEP = 8  # above 16, every multiple of 8
WARMUP_RUNS = 2  # eager runs before capture: Triton compiles, cuBLAS picks algorithms


def capture_batch_sizes(max_bs: int) -> List[int]:
    """[1, 2, 4, 8, 12, 16, 24, 32, 40, ..., max_bs] (max_bs itself always included)."""
    if max_bs < 1:
        raise ValueError(f"the largest CUDA-graph batch size must be >= 1, got {max_bs}")
    sizes = [bs for bs in SMALL_BATCH_SIZES if bs <= max_bs]
    sizes += list(range(SMALL_BATCH_SIZES[-1] + LARGE_BATCH_STEP, max_bs + 1, LARGE_BATCH_STEP))
    if sizes[-1] != max_bs:
        sizes.append(max_bs)
    return sizes


def default_max_bs(total_device_bytes: int) -> int:
    """160 on 80 GB-class GPUs; 256 where there is room for the larger graphs' buffers."""
    return 256 if total_device_bytes > 100 * _GiB else 160


@dataclass
class StaticInputs:
    """The decode inputs graphs read: rows of one [5, max_bs] int64 table, so padding a range
    of rows is one copy from `padding` (what a padded row holds) rather than five fills."""

    table: torch.Tensor
    padding: torch.Tensor

    @classmethod
    def allocate(cls, max_bs: int, padding_row: int, device: str) -> "StaticInputs":
        padding = torch.zeros(5, max_bs, dtype=torch.int64, device=device)
        padding[2].fill_(padding_row)  # req_pool_indices -> the spare all-zero row
        padding[3].fill_(1)  # seq_lens: one token, at position 0 of that row -> slot 0
        return cls(table=padding.clone(), padding=padding)

    @property
    def input_ids(self) -> torch.Tensor:
        return self.table[0]

    @property
    def positions(self) -> torch.Tensor:
        return self.table[1]

    @property
    def req_pool_indices(self) -> torch.Tensor:
        return self.table[2]

    @property
    def seq_lens(self) -> torch.Tensor:
        return self.table[3]

    @property
    def out_cache_loc(self) -> torch.Tensor:
        return self.table[4]

    def load(self, fb: ForwardBatch, graph_bs: int) -> None:
        """Copy fb's rows in; reset rows [bs, graph_bs) to padding (they may hold an earlier,
        larger batch's requests, whose KV slots a padded row must never write)."""
        bs = fb.batch_size
        if fb.decode_table is not None:
            self.table[:, :bs].copy_(fb.decode_table, non_blocking=True)
        else:
            sources = (fb.input_ids, fb.positions, fb.req_pool_indices, fb.seq_lens, fb.out_cache_loc)
            for row, src in enumerate(sources):
                self.table[row, :bs].copy_(src, non_blocking=True)
        if graph_bs > bs:
            self.table[:, bs:graph_bs].copy_(self.padding[:, bs:graph_bs])


@contextlib.contextmanager
def _no_gc_during_capture() -> Iterator[None]:
    """Collect garbage now and keep the collector off while capturing.

    A collection mid-capture can free CUDA objects of garbage cycles (an earlier runner's graphs,
    events, pinned buffers); those frees make CUDA calls that are illegal while a stream is
    capturing, which invalidates the capture ("operation failed due to a previous error during
    capture"). Recent PyTorch no longer collects before capture by itself."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class CudaGraphRunner:
    """Captures decode graphs for `batch_sizes` at construction; `replay` runs a decode batch."""

    def __init__(self, model_runner: "ModelRunner", batch_sizes: Sequence[int], padding_row: int):
        if not batch_sizes:
            raise ValueError("CudaGraphRunner needs at least one batch size to capture")
        self.runner = model_runner
        self.batch_sizes = sorted(set(int(bs) for bs in batch_sizes))
        self.max_bs = self.batch_sizes[-1]
        self.padding_row = padding_row
        self.num_replays = 0
        self.graphs: Dict[int, torch.cuda.CUDAGraph] = {}
        self.static_batches: Dict[int, ForwardBatch] = {}
        self.lora = getattr(model_runner, "lora", None)  # multi-LoRA: static row segments per graph
        self.lora_batches: Dict[int, object] = {}
        # With LoRA, a second graph per size without the LoRA kernels for batches that use no
        # adapter: replaying the adapter graph's empty launches cost 0.7 ms a step on an H100.
        self.base_graphs: Dict[int, torch.cuda.CUDAGraph] = {}
        model = model_runner.model
        # A speculative draft head reads one feature row per token (spec_features) and returns its
        # hidden states: both get static buffers. Its logits may cover a smaller draft vocabulary.
        feature_width = getattr(model, "graph_feature_width", None)
        logits_width = getattr(model, "output_vocab_size", None) or model_runner.vocab_size()
        with torch.inference_mode():
            self.inputs = StaticInputs.allocate(self.max_bs, padding_row, model_runner.device)
            self.logits = torch.zeros(self.max_bs, logits_width, dtype=torch.float32, device=model_runner.device)
            self.features = self.hidden = None
            if feature_width:
                self.features = torch.zeros(self.max_bs, feature_width, dtype=model_runner.dtype,
                                            device=model_runner.device)
                self.hidden = torch.zeros_like(self.features)
        model_runner.attn_backend.init_cuda_graph_state(self.max_bs)
        self.pool = torch.cuda.graph_pool_handle()
        self.capture_seconds, self.capture_bytes = self._capture_all()

    # ---------------------------------------------------------------- capture
    def _static_batch(self, bs: int) -> ForwardBatch:
        inp = self.inputs
        return ForwardBatch(
            forward_mode=ForwardMode.DECODE,
            batch_size=bs,
            input_ids=inp.input_ids[:bs],
            positions=inp.positions[:bs],
            req_pool_indices=inp.req_pool_indices[:bs],
            seq_lens=inp.seq_lens[:bs],
            out_cache_loc=inp.out_cache_loc[:bs],
            seq_lens_cpu=[1] * bs,  # what padded rows hold; a replay puts the real lengths first
            req_to_token_pool=self.runner.req_to_token_pool,
            kv_pool=self.runner.kv_pool,
            attn_backend=self.runner.attn_backend,
            spec_features=None if self.features is None else self.features[:bs],
        )

    def _run_model(self, fb: ForwardBatch) -> None:
        out = self.runner.model.forward(fb.input_ids, fb.positions, fb)
        self.logits[: fb.batch_size].copy_(out.next_token_logits)
        if self.hidden is not None:
            self.hidden[: fb.batch_size].copy_(out.hidden_states)

    @torch.inference_mode()
    def _capture_all(self) -> tuple:
        torch.cuda.synchronize()
        start, free_before = time.perf_counter(), torch.cuda.mem_get_info()[0]
        stream = torch.cuda.Stream()
        with _no_gc_during_capture():
            for bs in reversed(self.batch_sizes):  # largest first: the others reuse its pool blocks
                try:
                    self._capture_one(bs, stream)
                except RuntimeError as e:
                    raise RuntimeError(
                        f"CUDA graph capture failed at batch size {bs}: {e}. Run with --disable-cuda-graph, "
                        f"or lower --cuda-graph-max-bs / --mem-fraction-static if it ran out of memory"
                    ) from e
        torch.cuda.synchronize()
        seconds, used = time.perf_counter() - start, free_before - torch.cuda.mem_get_info()[0]
        logger.info("CUDA graphs: captured %d decode batch sizes (max %d) in %.1f s, using %.0f MiB",
                    len(self.batch_sizes), self.max_bs, seconds, used / (1 << 20))
        return seconds, used

    def _capture_one(self, bs: int, stream: torch.cuda.Stream) -> None:
        fb = self._static_batch(bs)
        self.runner.attn_backend.init_forward_metadata_capture(fb)
        if self.lora is not None:
            self.lora_batches[bs] = self.lora.graph_batch(bs, self.max_bs)
            self.lora.ctx.batch = self.lora_batches[bs]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_RUNS):  # padded inputs: reads and writes only KV slot 0
                self._run_model(fb)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, stream=stream):
            self._run_model(fb)
        self.graphs[bs], self.static_batches[bs] = graph, fb
        if self.lora is not None:
            self.lora.ctx.batch = None
            self.base_graphs[bs] = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.base_graphs[bs], pool=self.pool, stream=stream):
                self._run_model(fb)

    # ---------------------------------------------------------------- replay
    def graph_batch_size(self, bs: int) -> Optional[int]:
        """The captured size a batch of `bs` runs at, or None if it is too large."""
        i = bisect.bisect_left(self.batch_sizes, bs)
        return self.batch_sizes[i] if i < len(self.batch_sizes) else None

    def can_run(self, fb: ForwardBatch) -> bool:
        # Only plain decode: extend batches vary in token count, and input logprobs need rows
        # the decode graph does not compute.
        return (fb.forward_mode.is_decode() and 0 < fb.batch_size <= self.max_bs
                and not fb.return_logprob)

    @torch.inference_mode()  # the static buffers are inference tensors
    def replay(self, fb: ForwardBatch) -> LogitsProcessorOutput:
        """Run decode batch `fb` through its graph. The logits returned are a view of a static
        buffer: read them (sample) before the next replay overwrites them."""
        graph_bs = self.graph_batch_size(fb.batch_size)
        if graph_bs is None or not self.can_run(fb):
            raise ValueError(f"no CUDA graph for a {fb.forward_mode.name} batch of {fb.batch_size} "
                             f"(captured decode sizes up to {self.max_bs}); check can_run first")
        self.inputs.load(fb, graph_bs)
        if self.features is not None:  # padded rows keep stale features: they only write slot 0
            self.features[: fb.batch_size].copy_(fb.spec_features, non_blocking=True)
        static = self.static_batches[graph_bs]
        # Backends that plan on the host (flashinfer) read the lengths; padded rows hold one token.
        static.seq_lens_cpu = list(fb.seq_lens_cpu) + [1] * (graph_bs - fb.batch_size)
        self.runner.attn_backend.init_forward_metadata_replay(static)
        graph = self.graphs[graph_bs]
        if self.lora is not None:
            if fb.lora_names and any(fb.lora_names):
                self.lora.prepare_graph(fb.lora_names, fb.batch_size, self.lora_batches[graph_bs])
            else:
                graph = self.base_graphs[graph_bs]
        graph.replay()
        self.num_replays += 1
        hidden = None if self.hidden is None else self.hidden[: fb.batch_size]
        return LogitsProcessorOutput(next_token_logits=self.logits[: fb.batch_size], hidden_states=hidden)
