"""The multimodal plumbing without a model: radix keys, positions, the scatter over extend
ranges (chunk cuts included), the encoder cache and the shared-memory transport."""

from __future__ import annotations

import glob
import os
import pickle
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import KVResources, ScheduleBatch
from sglang.runtime.mem_cache.memory_pool import ReqToTokenPool, TokenSlotAllocator
from sglang.runtime.mem_cache.radix_cache import RadixCache
from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.runtime.multimodal.embedding import overlapping_pieces, scatter_multimodal
from sglang.runtime.multimodal.encoder_cache import EncoderCache
from sglang.runtime.multimodal.inputs import MultimodalInputs, MultimodalItem, content_hash, placeholder_spans
from sglang.runtime.multimodal.shared_tensor import export_features, import_features, unlink_leftovers
from sglang.runtime.sampling.sampling_params import SamplingParams


def _item(offset: int, length: int, seed: int = 0, hidden: int = 4) -> MultimodalItem:
    feats = {"pixel_values": torch.randn(length, hidden, generator=torch.Generator().manual_seed(seed))}
    return MultimodalItem("image", content_hash(feats), feats, offset, length)


def _encode(items):
    # The "encoder" returns the item's pixels: scattered rows are then easy to check.
    return [it.features["pixel_values"].clone() for it in items]


def _req(ids, mm=None, rid="r") -> Req:
    return Req(rid, ids, SamplingParams(max_new_tokens=4), set(), seed=0, mm_inputs=mm)


def test_content_hash_depends_on_values_shape_and_name() -> None:
    a = torch.arange(6.0)
    h = content_hash({"x": a})
    assert h == content_hash({"x": a.clone()})
    assert h != content_hash({"x": a + 1})
    assert h != content_hash({"x": a.reshape(2, 3)})
    assert h != content_hash({"y": a})
    assert 0 <= h < 1 << 63


def test_placeholder_spans() -> None:
    assert placeholder_spans([1, 7, 7, 2, 7, 3, 7, 7, 7], 7) == [(1, 2), (4, 1), (6, 3)]
    assert placeholder_spans([1, 2], 7) == []


def test_cache_keys_differ_only_at_image_positions() -> None:
    ids = [5, 9, 9, 9, 6]
    a = MultimodalInputs([_item(1, 3, seed=1)])
    b = MultimodalInputs([_item(1, 3, seed=2)])
    ka, kb = a.cache_key_ids(ids), b.cache_key_ids(ids)
    assert ka[0] == kb[0] == 5 and ka[4] == kb[4] == 6
    assert ka[1:4] != kb[1:4] and all(k < 0 for k in ka[1:4])
    assert ka == MultimodalInputs([_item(1, 3, seed=1)]).cache_key_ids(ids)
    req = _req(ids, a)
    req.output_ids = [11, 12]
    assert req.cache_key(7) == ka + [11, 12]
    assert req.cache_key(3) == ka[:3]
    assert _req(ids).cache_key(5) == ids


def _resources(tokens: int = 256):
    pool = ReqToTokenPool(8, 64, "cpu")
    alloc = TokenSlotAllocator(tokens, "cpu")
    cache = RadixCache(pool, alloc)
    return KVResources(pool, alloc, SimpleNamespace(), cache, "cpu"), cache


def test_radix_cache_reuses_the_same_image_and_never_a_different_one() -> None:
    res, cache = _resources()
    ids = [5, 9, 9, 9, 6, 7]
    first = _req(ids, MultimodalInputs([_item(1, 3, seed=1)]))
    first.fill_ids = list(ids)
    batch = ScheduleBatch([first], ForwardMode.EXTEND, res)
    batch.build_extend()
    batch.commit_extend()
    cache.cache_finished_req(first)
    same = _req(ids, MultimodalInputs([_item(1, 3, seed=1)]))
    other = _req(ids, MultimodalInputs([_item(1, 3, seed=2)]))
    assert len(cache.match_prefix(same.cache_key(len(ids))).indices) == len(ids)
    # A different image shares only the text before it.
    assert len(cache.match_prefix(other.cache_key(len(ids))).indices) == 1


def test_extend_batch_carries_mm_inputs_and_mrope_positions() -> None:
    res, _ = _resources()
    mrope = torch.tensor([[0, 1, 1, 1, 1, 3], [0, 1, 1, 2, 2, 3], [0, 1, 2, 1, 2, 3]])
    mm = MultimodalInputs([_item(1, 4)], mrope_positions=mrope, mrope_delta=-2)
    a = _req([1, 9, 9, 9, 9, 2], mm, "a")
    b = _req([3, 4, 5], None, "b")
    a.fill_ids, b.fill_ids = a.all_ids, b.all_ids
    fb = ScheduleBatch([a, b], ForwardMode.EXTEND, res).build_extend()
    assert fb.mm_inputs == [mm, None]
    expect = torch.cat([mrope, torch.arange(3).expand(3, -1)], dim=1)
    assert torch.equal(fb.mrope_positions, expect)
    assert fb.positions.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2]  # sequence positions stay 1D


def test_rope_positions_past_the_prompt_are_shifted_by_delta() -> None:
    mrope = torch.tensor([[0, 1, 1], [0, 1, 2], [0, 2, 2]])
    mm = MultimodalInputs([], mrope_positions=mrope, mrope_delta=-1)
    got = mm.rope_positions(2, 3)
    assert got.tolist() == [[1, 2, 3], [2, 2, 3], [2, 2, 3]]


def test_decode_positions_are_shifted_but_kv_columns_are_not() -> None:
    res, _ = _resources()
    mm = MultimodalInputs([_item(1, 2)], mrope_positions=torch.zeros(3, 4, dtype=torch.int64), mrope_delta=-3)
    a, b = _req([1, 9, 9, 2], mm, "a"), _req([4, 5], None, "b")
    for r in (a, b):
        r.fill_ids = r.all_ids
    batch = ScheduleBatch([a, b], ForwardMode.EXTEND, res)
    batch.build_extend()
    batch.commit_extend()
    a.output_ids, b.output_ids = [7], [8]
    fb = ScheduleBatch([a, b], ForwardMode.DECODE, res).build_decode()
    assert fb.positions.tolist() == [4 - 3, 2]
    table = res.req_to_token_pool.req_to_token
    assert int(table[a.req_pool_idx, 4]) == int(fb.out_cache_loc[0])
    assert int(table[b.req_pool_idx, 2]) == int(fb.out_cache_loc[1])


def _extend_batch(segments):
    """segments: (mm or None, prefix_len, extend_len) per request."""
    return SimpleNamespace(forward_mode=ForwardMode.EXTEND, mm_inputs=[s[0] for s in segments],
                           extend_prefix_lens_cpu=[s[1] for s in segments],
                           extend_seq_lens_cpu=[s[2] for s in segments])


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(0, 6), length=st.integers(1, 8), cuts=st.lists(st.integers(1, 20), min_size=1, max_size=4))
def test_chunks_cutting_an_image_assemble_its_rows_exactly(offset: int, length: int, cuts) -> None:
    total = offset + length + 2
    item = _item(offset, length, seed=length)
    mm = MultimodalInputs([item])
    ends = sorted({min(c, total) for c in cuts} | {total})
    rows = torch.zeros(total, 4)
    start, cache = 0, EncoderCache()
    for end in ends:
        fb = _extend_batch([(None, 0, 3), (mm, start, end - start)])
        embeds = torch.zeros(3 + end - start, 4)
        scatter_multimodal(embeds, overlapping_pieces(fb), _encode, cache)
        assert not embeds[:3].any()  # the other request's rows are untouched
        rows[start:end] = embeds[3:]
        start = end
    expect = torch.zeros(total, 4)
    expect[offset:offset + length] = item.features["pixel_values"]
    assert torch.equal(rows, expect)
    assert cache.misses == 1  # encoded once, the later chunks read the cache


def test_same_image_in_two_requests_is_encoded_once() -> None:
    calls = []

    def encode(items):
        calls.append(len(items))
        return _encode(items)

    item = _item(0, 2, seed=3)
    fb = _extend_batch([(MultimodalInputs([item]), 0, 3), (MultimodalInputs([_item(0, 2, seed=3)]), 0, 3)])
    embeds = scatter_multimodal(torch.zeros(6, 4), overlapping_pieces(fb), encode, EncoderCache())
    assert calls == [1]
    assert torch.equal(embeds[0:2], embeds[3:5])
    assert not overlapping_pieces(SimpleNamespace(forward_mode=ForwardMode.DECODE, mm_inputs=None))


def test_encoder_output_with_the_wrong_row_count_is_an_error() -> None:
    fb = _extend_batch([(MultimodalInputs([_item(0, 3)]), 0, 3)])
    with pytest.raises(RuntimeError, match="3 placeholder tokens"):
        scatter_multimodal(torch.zeros(3, 4), overlapping_pieces(fb), lambda items: [torch.zeros(2, 4)],
                           EncoderCache())


def test_encoder_cache_evicts_least_recently_used_within_capacity() -> None:
    cache = EncoderCache(capacity_bytes=3 * 16)
    for k in range(3):
        cache.put(k, torch.zeros(4))  # 16 bytes each
    cache.get(0)
    cache.put(3, torch.zeros(4))
    assert cache.get(1) is None and cache.get(0) is not None and len(cache) == 3
    assert cache.nbytes == 48


def test_shared_memory_transport_round_trip_and_cleanup() -> None:
    big, small = torch.randn(600, 512), torch.tensor([[1, 2, 3]])
    exported = export_features({"pixel_values": big, "grid": small}, min_bytes=1024)
    assert isinstance(exported["grid"], torch.Tensor)
    mine = glob.glob(f"/dev/shm/sglang_mm_{os.getpid()}_*")
    assert len(mine) == 1
    got = import_features(pickle.loads(pickle.dumps(exported)))
    assert torch.equal(got["pixel_values"], big) and torch.equal(got["grid"], small)
    assert not glob.glob(f"/dev/shm/sglang_mm_{os.getpid()}_*")  # the receiver unlinked it
    export_features({"x": big}, min_bytes=1)
    assert unlink_leftovers(os.getpid()) == 1


def test_mm_inputs_survive_the_trip_and_keep_the_sender_copy() -> None:
    mm = MultimodalInputs([_item(2, 3)], mrope_positions=torch.zeros(3, 6, dtype=torch.int64), mrope_delta=-1)
    sent = pickle.loads(pickle.dumps(mm.exported())).imported()
    assert torch.equal(sent.items[0].features["pixel_values"], mm.items[0].features["pixel_values"])
    assert sent.items[0].content_hash == mm.items[0].content_hash and sent.mrope_delta == -1
    assert isinstance(mm.items[0].features["pixel_values"], torch.Tensor)  # the original is intact


def test_encoder_cache_stats_count_hits_and_misses() -> None:
    from sglang.runtime.multimodal.encoder_cache import encoder_cache_stats

    cache = EncoderCache()
    cache.get_or_compute([1, 2], lambda idx: [torch.zeros(2, 4) for _ in idx])
    cache.get_or_compute([1, 3], lambda idx: [torch.zeros(2, 4) for _ in idx])
    assert encoder_cache_stats(cache) == {"encoder_cache_items": 3, "encoder_cache_bytes": 3 * 32,
                                          "encoder_cache_hits": 1, "encoder_cache_misses": 3}
    assert encoder_cache_stats(None) == {}
