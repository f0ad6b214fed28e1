"""Images computed in one extend pass (Gemma 3): the scheduler's chunk ends and cached prefixes
never fall inside one, and the per-token attention limits cover exactly the images of a pass."""

from __future__ import annotations

from types import SimpleNamespace
from typing import List, Tuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.layers.attention.torch_native_backend import visibility_mask
from sglang.runtime.managers.prefill_adder import AddResult, PrefillAdder
from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import KVResources, ScheduleBatch
from sglang.runtime.mem_cache.memory_pool import ReqToTokenPool, TokenSlotAllocator
from sglang.runtime.mem_cache.radix_cache import RadixCache
from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.runtime.multimodal.bidirectional import chunk_end, prefix_floor, visible_until
from sglang.runtime.multimodal.inputs import MultimodalInputs, MultimodalItem
from sglang.runtime.sampling.sampling_params import SamplingParams

IMAGE_ID = 9


def _mm(spans: List[Tuple[int, int]], bidirectional: bool = True) -> MultimodalInputs:
    items = [MultimodalItem("image", 1000 + i, {}, off, n) for i, (off, n) in enumerate(spans)]
    return MultimodalInputs(items, bidirectional=bidirectional)


def _prompt(gaps: List[int], lengths: List[int], tail: int) -> Tuple[List[int], List[Tuple[int, int]]]:
    """Text runs of `gaps[i]` tokens, each followed by an image of `lengths[i]` tokens, then `tail`."""
    ids, spans = [], []
    for gap, n in zip(gaps, lengths):
        ids += [1 + (len(ids) + k) % 7 for k in range(gap)]
        spans.append((len(ids), n))
        ids += [IMAGE_ID] * n
    return ids + [2] * tail, spans


def _resources(tokens: int = 1024):
    pool = ReqToTokenPool(8, 256, "cpu")
    alloc = TokenSlotAllocator(tokens, "cpu")
    cache = RadixCache(pool, alloc)
    return KVResources(pool, alloc, SimpleNamespace(), cache, "cpu"), cache


def _adder(res: KVResources, cache: RadixCache, chunk: int) -> PrefillAdder:
    return PrefillAdder(cache, res.allocator, res.req_to_token_pool, [], 0.0, 4096, chunk, 8)


def _prefill(res: KVResources, cache: RadixCache, req: Req, chunk: int) -> List[Tuple[int, int]]:
    """Run the request's prefill through the adder as the scheduler does; the passes' ranges."""
    passes = []
    adder = _adder(res, cache, chunk)
    assert adder.add_one(req) == AddResult.ADDED
    while True:
        batch = ScheduleBatch(adder.can_run, ForwardMode.EXTEND, res)
        fb = batch.build_extend()
        if req.mm_inputs.bidirectional:
            visible_until(fb)  # raises if the pass covers part of an image
        passes.append((fb.extend_prefix_lens_cpu[0], fb.extend_prefix_lens_cpu[0] + fb.extend_seq_lens_cpu[0]))
        batch.commit_extend()
        cache.cache_unfinished_req(req)
        if not req.is_chunked:
            return passes
        adder = _adder(res, cache, chunk)
        adder.add_chunked_req(req)


@settings(max_examples=80, deadline=None)
@given(gaps=st.lists(st.integers(0, 6), min_size=1, max_size=3), lengths=st.lists(st.integers(1, 12), min_size=3,
       max_size=3), tail=st.integers(1, 5), chunk=st.integers(1, 14))
def test_chunked_prefill_never_cuts_an_image(gaps, lengths, tail, chunk) -> None:
    ids, spans = _prompt(gaps, lengths[:len(gaps)], tail)
    res, cache = _resources()
    req = Req("r", ids, SamplingParams(max_new_tokens=2), set(), seed=0, mm_inputs=_mm(spans))
    passes = _prefill(res, cache, req, chunk)
    assert passes[0][0] == 0 and passes[-1][1] == len(ids)
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(passes, passes[1:] + [(len(ids), None)]))
    for start, end in passes:
        assert not any(off < end < off + n for off, n in spans), (passes, spans)
        # A pass is the chunk size, shorter only to end before an image, longer only to end after one.
        if end - start > chunk:
            assert any(end == off + n and start >= off for off, n in spans)
        elif end - start < chunk and end < len(ids):
            assert any(end == off for off, _ in spans)


def test_other_models_chunks_cut_anywhere() -> None:
    ids, spans = _prompt([2], [10], 3)
    res, cache = _resources()
    req = Req("r", ids, SamplingParams(max_new_tokens=2), set(), seed=0, mm_inputs=_mm(spans, bidirectional=False))
    assert _prefill(res, cache, req, 4) == [(0, 4), (4, 8), (8, 12), (12, 15)]


def test_cached_prefix_stops_at_the_image_its_logprobs_start_in() -> None:
    ids, spans = _prompt([3, 2], [6, 6], 4)  # images at [3, 9) and [11, 17)
    res, cache = _resources()
    first = Req("a", ids, SamplingParams(max_new_tokens=2), set(), seed=0, mm_inputs=_mm(spans))
    _prefill(res, cache, first, 64)
    # Log-probs from position p need the logits of p - 1: that token and its whole image are recomputed.
    for logprob_start, cached in ((6, 3), (9, 3), (10, 9), (12, 11), (14, 11), (18, 17)):
        again = Req("b", ids, SamplingParams(max_new_tokens=2), set(), seed=0, mm_inputs=_mm(spans),
                    return_logprob=True, logprob_start_len=logprob_start)
        again.init_fill_ids()
        assert again.max_prefix_len() == cached
        assert len(cache.match_prefix(again.cache_key(again.max_prefix_len())).indices) == cached
    plain = Req("c", ids, SamplingParams(max_new_tokens=2), set(), seed=0, mm_inputs=_mm(spans, False),
                return_logprob=True, logprob_start_len=6)
    plain.init_fill_ids()
    assert plain.max_prefix_len() == 5


def test_boundary_helpers() -> None:
    mm = _mm([(3, 4), (9, 2)])
    assert [prefix_floor(mm, n) for n in range(12)] == [0, 1, 2, 3, 3, 3, 3, 7, 8, 9, 9, 11]
    assert chunk_end(mm, 0, 5) == 3 and chunk_end(mm, 3, 5) == 7 and chunk_end(mm, 7, 10) == 9
    assert chunk_end(mm, 9, 10) == 11 and chunk_end(mm, 0, 7) == 7
    assert prefix_floor(None, 5) == 5 and chunk_end(_mm([(3, 4)], False), 0, 5) == 5


def _fb(segments):
    """segments: (mm or None, prefix_len, extend_len) per request."""
    total = sum(s[2] for s in segments)
    return SimpleNamespace(forward_mode=ForwardMode.EXTEND, mm_inputs=[s[0] for s in segments],
                           extend_prefix_lens_cpu=[s[1] for s in segments],
                           extend_seq_lens_cpu=[s[2] for s in segments], positions=torch.zeros(total))


def test_visible_until_marks_each_image_of_the_pass() -> None:
    mm = _mm([(2, 3), (7, 2)])
    got = visible_until(_fb([(None, 0, 3), (mm, 1, 9), (None, 4, 2)]))
    assert got.tolist() == [0, 1, 2] + [1, 4, 4, 4, 5, 6, 8, 8, 9] + [4, 5]
    assert visible_until(_fb([(None, 0, 3), (mm, 5, 1)])) is None  # no image in the pass
    assert visible_until(SimpleNamespace(forward_mode=ForwardMode.DECODE, mm_inputs=[mm])) is None
    with pytest.raises(RuntimeError, match="one pass"):
        visible_until(_fb([(mm, 0, 4)]))


def test_visibility_mask_with_limits() -> None:
    q_pos, k_pos = torch.arange(2, 6), torch.arange(6)
    limits = torch.tensor([2, 4, 4, 5])  # positions 3 and 4 form an image
    mask = visibility_mask(q_pos, k_pos, window=2, q_limit=limits)
    assert mask.int().tolist() == [[0, 1, 1, 0, 0, 0],
                                   [0, 0, 1, 1, 1, 0],
                                   [0, 0, 0, 1, 1, 0],
                                   [0, 0, 0, 0, 1, 1]]
    assert torch.equal(visibility_mask(q_pos, k_pos, None, q_pos), visibility_mask(q_pos, k_pos, None))
