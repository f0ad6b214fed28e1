"""KV memory pools: slot allocator, request-to-token table, per-layer K/V storage."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool, TokenSlotAllocator


def test_allocator_never_hands_out_slot_zero():
    alloc = TokenSlotAllocator(16, "cpu")
    slots = alloc.alloc(16)
    assert slots.dtype == torch.int64
    assert sorted(slots.tolist()) == list(range(1, 17))
    assert alloc.available_size() == 0 and alloc.alloc(1) is None


def test_allocator_alloc_free_roundtrip_and_shortage():
    alloc = TokenSlotAllocator(8, "cpu")
    a = alloc.alloc(5)
    assert alloc.alloc(4) is None and alloc.available_size() == 3  # a failed alloc takes nothing
    alloc.free(a[:2])
    assert alloc.available_size() == 5
    b = alloc.alloc(5)  # needs the pending frees merged back in
    assert set(b.tolist()) == set(range(1, 9)) - set(a[2:].tolist())
    alloc.free(torch.empty((0,), dtype=torch.int64))
    assert alloc.available_size() == 0


def test_allocator_free_accepts_int32_and_rejects_slot_zero():
    alloc = TokenSlotAllocator(4, "cpu")
    got = alloc.alloc(2)
    alloc.free(got.to(torch.int32))  # rows of req_to_token are int32
    assert alloc.available_size() == 4
    with pytest.raises(AssertionError, match="slot 0 is reserved"):
        alloc.free(torch.tensor([0]))


def test_allocator_clear_restores_everything():
    alloc = TokenSlotAllocator(10, "cpu")
    alloc.alloc(7)
    alloc.clear()
    assert alloc.available_size() == 10 and sorted(alloc.alloc(10).tolist()) == list(range(1, 11))


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 12)), max_size=40))
def test_allocator_conserves_slots(ops):
    """Any alloc/free sequence: held slots are distinct, never 0, and held + free == size."""
    alloc = TokenSlotAllocator(24, "cpu")
    held: list = []
    for is_alloc, n in ops:
        if is_alloc:
            got = alloc.alloc(n)
            if got is None:
                assert n > alloc.available_size()
                continue
            held += got.tolist()
        else:
            n = min(n, len(held))
            alloc.free(torch.tensor(held[:n], dtype=torch.int64))
            held = held[n:]
        assert len(set(held)) == len(held) and 0 not in held
        assert len(held) + alloc.available_size() == 24


def test_req_to_token_pool_alloc_free_write():
    pool = ReqToTokenPool(3, 10, "cpu")
    assert pool.req_to_token.shape == (3, 10) and pool.req_to_token.dtype == torch.int32
    rows = pool.alloc(2)
    assert len(set(rows)) == 2 and pool.available_size() == 1
    assert pool.alloc(2) is None and pool.available_size() == 1
    pool.write(rows[0], 2, 5, torch.tensor([7, 8, 9], dtype=torch.int64))
    assert pool.req_to_token[rows[0], :6].tolist() == [0, 0, 7, 8, 9, 0]
    assert pool.req_to_token.dtype == torch.int32
    pool.free(rows[0])
    pool.free([rows[1]])
    assert pool.available_size() == 3 and sorted(pool.alloc(3)) == [0, 1, 2]
    pool.clear()
    assert pool.available_size() == 3


def test_kv_pool_shapes_and_slot_zero_row():
    pool = KVPool(size=8, dtype=torch.float32, num_kv_heads=2, head_dim=4, num_layers=3, device="cpu")
    assert len(pool.k_buffer) == len(pool.v_buffer) == 3
    assert pool.get_key_buffer(1).shape == (9, 2, 4)  # size + 1: slot 0 is the padding target
    v_pool = KVPool(8, torch.float32, 2, 4, 1, "cpu", v_head_dim=6)
    assert v_pool.get_value_buffer(0).shape == (9, 2, 6)
    assert KVPool.bytes_per_token(2, 4, 3, torch.bfloat16) == 2 * 2 * 4 * 3 * 2


def test_kv_pool_set_get_converts_dtype():
    pool = KVPool(size=8, dtype=torch.bfloat16, num_kv_heads=2, head_dim=4, num_layers=2, device="cpu")
    loc = torch.tensor([3, 5])
    k = torch.randn(2, 8)  # flattened heads, float32: must be reshaped and cast
    v = torch.randn(2, 2, 4)
    pool.set_kv_buffer(1, loc, k, v)
    got_k = pool.get_key_buffer(1)[loc]
    assert got_k.dtype == torch.bfloat16
    torch.testing.assert_close(got_k.float(), k.view(2, 2, 4).bfloat16().float())
    torch.testing.assert_close(pool.get_value_buffer(1)[loc].float(), v.bfloat16().float())
    assert pool.get_key_buffer(0).abs().sum() == 0  # other layers untouched
    assert pool.get_key_buffer(1)[[0, 1, 2, 4]].abs().sum() == 0  # other slots untouched


def test_kv_pool_copy_slots_all_layers():
    pool = KVPool(size=6, dtype=torch.float32, num_kv_heads=1, head_dim=2, num_layers=2, device="cpu")
    for layer in range(2):
        pool.set_kv_buffer(layer, torch.tensor([1, 2]), torch.randn(2, 2), torch.randn(2, 2))
    pool.copy_slots(torch.tensor([4, 5]), torch.tensor([1, 2]))
    for layer in range(2):
        assert torch.equal(pool.get_key_buffer(layer)[4:6], pool.get_key_buffer(layer)[1:3])
        assert torch.equal(pool.get_value_buffer(layer)[4:6], pool.get_value_buffer(layer)[1:3])
