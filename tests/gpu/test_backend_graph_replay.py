"""Decode CUDA graphs of each attention backend, driven by the real CudaGraphRunner, vs the float64
plain-torch twin.

The model-level graph tests compare graph logits with eager logits of the same backend and tiny
random models, so an error the backend makes in both modes, or one the model washes out, passes.
Here a stand-in "model" of just the three attention layers (plain, soft cap, window 24) runs inside
graphs captured at two sizes (4 and 8) and replayed with smaller real batches, so the runner's
padding (spare all-zero table row, seq_len 1, slot 0) reaches the backend. Between replays the
batch composition, the lengths (1 to 300+, past one split/tile) and q/k/v all change, so a plan or
metadata left from the capture or an earlier replay (flashinfer plans on the host at replay) shows
as a wrong row. Every real row is checked against the float64 twin with the kernel tests'
tolerance, and the KV pool must be unchanged outside this step's slots and slot 0: a padded row
that kept an earlier, larger batch's request (or its slot) would overwrite a real request's KV.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import List

import pytest
import torch

pytest.importorskip("triton")

from sglang.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool  # noqa: E402
from sglang.runtime.model_executor.cuda_graph_runner import CudaGraphRunner  # noqa: E402
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode  # noqa: E402
from tests.gpu.kernel_checks import assert_close  # noqa: E402
from tests.gpu.test_kernels_backend import (  # noqa: E402
    BACKENDS, D, DTYPE, H, KVH, LAYERS, Batch, _backend, _reference, _runner,
)

GRAPH_SIZES = (4, 8)
TABLE_ROWS = 16
PADDING_ROW = TABLE_ROWS - 1  # never given to a request: its entries stay 0 (-> KV slot 0)
# Cached prefix per request (table row = index); 0: a new request, whose first decode has length 1.
PREFIX_LENS = [0, 37, 200, 5, 130, 0, 300, 0, 23]
# Requests decoded at each replay: 6 and 5 run in the graph of 8, 3 and 1 in the graph of 4. The
# 5 after the 6 leaves graph rows 5..7 holding a request of the earlier replay until they are reset.
SCHEDULE = [[0, 1, 2, 3, 4, 5], [6, 2, 7], [4, 3, 8, 0, 2], [1, 6, 5], [2]]


class AttentionOnly(torch.nn.Module):
    """A model for CudaGraphRunner made of LAYERS alone: q/k/v come from static buffers the test
    fills before each replay, and its "logits" are the layers' outputs side by side."""

    def __init__(self, max_bs: int):
        super().__init__()
        self.layers = torch.nn.ModuleList(LAYERS)
        self.qkv = [[torch.zeros(max_bs, h * D, dtype=DTYPE, device="cuda") for h in (H, KVH, KVH)]
                    for _ in LAYERS]

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, fb: ForwardBatch) -> SimpleNamespace:
        bs = fb.batch_size
        outs = [layer(*(t[:bs] for t in qkv), fb) for layer, qkv in zip(self.layers, self.qkv)]
        return SimpleNamespace(next_token_logits=torch.cat(outs, dim=1))


def _graph_host(name: str, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The kernel tests' runner with the stand-in model, a table with a spare row and a backend."""
    runner = _runner()
    runner.model = AttentionOnly(max(GRAPH_SIZES))
    runner.req_to_token_pool = ReqToTokenPool(TABLE_ROWS, 512, "cuda")
    runner.vocab_size = lambda: len(LAYERS) * H * D
    runner.attn_backend = _backend(name, runner, monkeypatch)
    return runner


def _decode(batch: Batch, live: List[int]) -> ForwardBatch:
    """One decode token for requests `live` (indices into batch), each given a fresh KV slot."""
    slots = batch._alloc(len(live))
    table = batch.runner.req_to_token_pool
    for slot, i in zip(slots.view(-1, 1), live):
        table.write(batch.rows[i], batch.lens[i], batch.lens[i] + 1, slot)
        batch.lens[i] += 1
    lens = [batch.lens[i] for i in live]
    dev = lambda xs: torch.tensor(xs, dtype=torch.int64, device="cuda")  # noqa: E731
    return ForwardBatch(
        forward_mode=ForwardMode.DECODE, batch_size=len(live), input_ids=dev([0] * len(live)),
        positions=dev(lens) - 1, req_pool_indices=dev([batch.rows[i] for i in live]), seq_lens=dev(lens),
        out_cache_loc=slots, seq_lens_cpu=lens, req_to_token_pool=table, kv_pool=batch.runner.kv_pool,
    )


def _kv_snapshot(pool: KVPool) -> List[torch.Tensor]:
    return [buf.clone() for buf in pool.k_buffer + pool.v_buffer]


def _replay(graphs: CudaGraphRunner, model: AttentionOnly, fb: ForwardBatch, what: str) -> torch.Tensor:
    """Fresh q/k/v in every static row (padded rows' too), NaN-poisoned logits, one replay."""
    graph_bs, replays = graphs.graph_batch_size(fb.batch_size), graphs.num_replays
    with torch.inference_mode():  # the runner's logits buffer is an inference tensor
        for buf in (t for qkv in model.qkv for t in qkv):
            buf.copy_(torch.randn_like(buf))
        graphs.logits.fill_(float("nan"))
        out = graphs.replay(fb).next_token_logits.clone()
        padded = graphs.logits[fb.batch_size : graph_bs].clone()
    assert graphs.num_replays == replays + 1
    assert torch.isfinite(padded).all(), f"{what}: padded rows gave non-finite output"
    return out


def _check_outputs(out: torch.Tensor, model: AttentionOnly, fb: ForwardBatch, what: str) -> None:
    bs, width = fb.batch_size, H * D
    assert out.shape == (bs, len(LAYERS) * width)
    for layer, (q, k, v) in zip(LAYERS, model.qkv):
        q, k, v = q[:bs], k[:bs], v[:bs]
        pool, loc = fb.kv_pool, fb.out_cache_loc
        for buf, new in ((pool.k_buffer, k), (pool.v_buffer, v)):
            assert torch.equal(buf[layer.layer_id][loc], new.view(-1, KVH, D)), f"{what}: new K/V not at out_cache_loc"
        got = out[:, layer.layer_id * width : (layer.layer_id + 1) * width]
        assert_close(got, _reference(layer, fb, q, k, v), what=f"{what} layer {layer.layer_id}")


def _check_only_step_slots_written(before: List[torch.Tensor], fb: ForwardBatch, what: str) -> None:
    pool = fb.kv_pool
    keep = torch.ones(before[0].shape[0], dtype=torch.bool, device="cuda")
    keep[fb.out_cache_loc] = False
    keep[0] = False  # padded rows' write target, never a request's
    for i, (old, new) in enumerate(zip(before, pool.k_buffer + pool.v_buffer)):
        changed = torch.nonzero((old[keep] != new[keep]).flatten(1).any(dim=1)).flatten()
        assert changed.numel() == 0, (f"{what}: KV buffer {i} changed outside this step's slots and slot 0 "
                                      f"({changed.numel()} slots): a padded row wrote a real request's KV")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", BACKENDS)
def test_padded_graph_replays_match_float64_twin(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _graph_host(name, monkeypatch)
    batch = Batch(runner, PREFIX_LENS, rows=range(len(PREFIX_LENS)))
    assert PADDING_ROW not in batch.rows
    graphs = CudaGraphRunner(runner, GRAPH_SIZES, padding_row=PADDING_ROW)
    assert sorted(graphs.graphs) == list(GRAPH_SIZES)
    used, lens_seen = set(), set()
    for step, live in enumerate(SCHEDULE):
        fb = _decode(batch, live)
        graph_bs = graphs.graph_batch_size(fb.batch_size)
        assert graph_bs > fb.batch_size, "every replay must run padded rows"
        used.add(graph_bs)
        lens_seen.update(fb.seq_lens_cpu)
        what = f"{name} replay {step} (bs {fb.batch_size} in graph {graph_bs}, lens {fb.seq_lens_cpu})"
        before = _kv_snapshot(runner.kv_pool)
        out = _replay(graphs, runner.model, fb, what)
        _check_only_step_slots_written(before, fb, what)
        _check_outputs(out, runner.model, fb, what)
    assert used == set(GRAPH_SIZES)
    assert 1 in lens_seen and max(lens_seen) > 256
