"""The decoder's small-op C++ CPU kernels (`sglang/kernels/cpu/decode_ops.cpp`) against their
torch twins: `rms_norm_ref` / `fused_add_rms_norm_ref`, `silu_and_mul_ref`, the torch path of
`RotaryEmbedding` plus the pool's KV write, and the torch path of `TorchNativeAttnBackend`'s
decode. Both the AVX-512 loops (where the CPU has them) and the portable loops are checked.

Exact where the kernels promise it (the residual add, rotary, the KV write), within float32
summation order elsewhere. Malformed inputs must raise RuntimeError before touching memory.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.layers.activation import silu_and_mul_ref
from sglang.runtime.layers.attention.torch_native_backend import TorchNativeAttnBackend
from sglang.runtime.layers.layernorm import fused_add_rms_norm_ref, rms_norm_ref
from sglang.runtime.layers.rotary_embedding import RotaryEmbedding

EPS = 1e-6
NORM_RTOL = 1e-6
ATTN_ATOL = 2e-6
HQ, HK, D = 9, 3, 64  # GQA: three query heads per KV head
NUM_SLOTS, TABLE_ROWS, TABLE_WIDTH = 600, 6, 48


@pytest.fixture(params=[False, True], ids=["portable", "avx512"])
def vector(request, cpu_ext) -> bool:
    if request.param and not cpu_ext.vector_path():
        pytest.skip("this CPU has no AVX-512")
    return request.param


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float = NORM_RTOL, atol: float = 1e-6) -> None:
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- RMSNorm

NORM_SHAPES = [(1, 576), (5, 100), (3, 33), (17, 64), (2, 1), (9, 4096)]


@pytest.mark.parametrize("tokens,hidden", NORM_SHAPES)
def test_rms_norm_matches_twin(cpu_ext, vector, tokens, hidden):
    gen = torch.Generator().manual_seed(hidden)
    x = torch.randn(tokens, hidden, generator=gen) * 3
    w = torch.randn(hidden, generator=gen)
    x_before = x.clone()
    _close(cpu_ext.rms_norm(x, None, w, EPS, vector), rms_norm_ref(x, w, EPS))
    assert torch.equal(x, x_before)


@pytest.mark.parametrize("tokens,hidden", NORM_SHAPES)
def test_fused_add_rms_norm_updates_residual_exactly(cpu_ext, vector, tokens, hidden):
    gen = torch.Generator().manual_seed(hidden + 1)
    x = torch.randn(tokens, hidden, generator=gen)
    residual = torch.randn(tokens, hidden, generator=gen) * 10
    w = torch.randn(hidden, generator=gen)
    x_before = x.clone()
    want_y, want_residual = fused_add_rms_norm_ref(x_before, residual.clone(), w, EPS)
    y = cpu_ext.rms_norm(x, residual, w, EPS, vector)
    assert torch.equal(residual, want_residual), "the residual must become x + residual, bit for bit"
    assert torch.equal(x, x_before)
    _close(y, want_y)


# ---------------------------------------------------------------- SiLU(gate) * up


@pytest.mark.parametrize("tokens,width", [(1, 1), (3, 15), (2, 17), (4, 100), (2, 1000)])
def test_silu_and_mul_matches_twin(cpu_ext, vector, tokens, width):
    gen = torch.Generator().manual_seed(width)
    x = torch.randn(tokens, 2 * width, generator=gen) * 30
    got = cpu_ext.silu_and_mul(x, vector)
    assert got.shape == (tokens, width) and got.is_contiguous()
    _close(got, silu_and_mul_ref(x))


def test_silu_and_mul_extreme_gates_stay_finite(cpu_ext, vector):
    gates = torch.tensor([-1e4, -1000.0, -100.0, -89.0, -87.5, -80.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 80.0,
                          88.8, 100.0, 1000.0, 1e4, 1e30, -1e30, -3.0e38])
    up = torch.linspace(-5, 5, gates.numel())
    x = torch.cat([gates, up])[None].repeat(3, 1)
    got = cpu_ext.silu_and_mul(x, vector)
    assert torch.isfinite(got).all()
    _close(got, silu_and_mul_ref(x), rtol=1e-6, atol=1e-30)


# ---------------------------------------------------------------- rotary + KV write


def _rope_case(tokens: int, head_dim: int, rotary_dim: int, max_pos: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    rope = RotaryEmbedding(head_dim, rotary_dim, max_pos, 10000.0, None, torch.float32)
    qkv = torch.randn(tokens, (HQ + 2 * HK) * head_dim, generator=gen)
    # Both ends of the table, plus random positions in between.
    positions = torch.randint(0, max_pos, (tokens,), generator=gen)
    positions[0], positions[-1] = 0, max_pos - 1
    out_loc = torch.randperm(NUM_SLOTS, generator=gen)[:tokens]
    k_buf = torch.randn(NUM_SLOTS, HK, head_dim, generator=gen)
    v_buf = torch.randn(NUM_SLOTS, HK, head_dim, generator=gen)
    return rope, qkv, positions, out_loc, k_buf, v_buf


def _split_qkv(qkv: torch.Tensor, head_dim: int):
    """q, k, v as the model passes them: strided column views of the fused qkv output."""
    return qkv.split([HQ * head_dim, HK * head_dim, HK * head_dim], dim=-1)


@pytest.mark.parametrize("head_dim,rotary_dim", [(64, 64), (64, 32), (48, 16), (40, 40), (32, 2)])
@pytest.mark.parametrize("tokens", [1, 7])
def test_rope_store_kv_matches_twin(cpu_ext, vector, head_dim, rotary_dim, tokens):
    max_pos = 50
    rope, qkv, positions, out_loc, k_buf, v_buf = _rope_case(tokens, head_dim, rotary_dim, max_pos, head_dim)
    q_ref, k_ref = rope.forward(positions, *_split_qkv(qkv.clone(), head_dim)[:2])  # torch path: cpu_ops unset
    v_ref = _split_qkv(qkv, head_dim)[2].clone()
    k_buf_ref, v_buf_ref = k_buf.clone(), v_buf.clone()
    k_buf_ref[out_loc] = k_ref.view(tokens, HK, head_dim)
    v_buf_ref[out_loc] = v_ref.view(tokens, HK, head_dim)

    q, k, v = _split_qkv(qkv, head_dim)
    assert q.stride(0) == k.stride(0) == v.stride(0) == qkv.stride(0)  # rows strided over all of qkv
    cpu_ext.rope_store_kv(positions, q, k, v, rope.cos_cache, rope.sin_cache, head_dim, k_buf, v_buf, out_loc, vector)
    # Rotary rounds exactly like the twin (no FMA): q and k are rotated in place, bit for bit.
    assert torch.equal(q, q_ref)
    assert torch.equal(k, k_ref)
    assert torch.equal(v, v_ref)
    # The KV write lands in exactly the out_loc slots; every other slot is untouched.
    assert torch.equal(k_buf, k_buf_ref)
    assert torch.equal(v_buf, v_buf_ref)


def test_rope_without_kv_buffers_only_rotates(cpu_ext, vector):
    rope, qkv, positions, _, _, _ = _rope_case(5, 64, 32, 20, seed=3)
    q_ref, k_ref = rope.forward(positions, *_split_qkv(qkv.clone(), 64)[:2])
    q, k, v = _split_qkv(qkv, 64)
    cpu_ext.rope_store_kv(positions, q, k, v, rope.cos_cache, rope.sin_cache, 64, None, None, None, vector)
    assert torch.equal(q, q_ref) and torch.equal(k, k_ref)


# ---------------------------------------------------------------- decode attention


def _attention_case(lens: Sequence[int], seed: int):
    """q [B, HQ*D], K/V pools, and a req_to_token table whose requests sit on shuffled rows and
    map their tokens to scattered (never contiguous) slots."""
    gen = torch.Generator().manual_seed(seed)
    batch = len(lens)
    q = torch.randn(batch, HQ * D, generator=gen)
    k_buf = torch.randn(NUM_SLOTS, HK, D, generator=gen)
    v_buf = torch.randn(NUM_SLOTS, HK, D, generator=gen)
    table = torch.zeros(TABLE_ROWS, TABLE_WIDTH, dtype=torch.int32)
    rows = torch.randperm(TABLE_ROWS, generator=gen)[:batch]
    free = torch.randperm(NUM_SLOTS - 1, generator=gen) + 1  # slot 0 stays the padding slot
    offset = 0
    for row, n in zip(rows.tolist(), lens):
        table[row, :n] = free[offset : offset + n].to(torch.int32)
        offset += n
    return q, k_buf, v_buf, table, rows, torch.tensor(list(lens), dtype=torch.int64)


def _torch_decode(q, k_buf, v_buf, table, rows, lens, window: int, cap: float) -> torch.Tensor:
    """The twin: TorchNativeAttnBackend.forward_decode on its torch path (no cpu_ops)."""
    pool = SimpleNamespace(dtype=k_buf.dtype, get_key_buffer=lambda _: k_buf, get_value_buffer=lambda _: v_buf,
                           read_kv=lambda _, k, v, dtype: (k.to(dtype), v.to(dtype)))
    fb = SimpleNamespace(kv_pool=pool, req_to_token_pool=SimpleNamespace(req_to_token=table), req_pool_indices=rows,
                         seq_lens=lens, seq_lens_cpu=lens.tolist(), attn_metadata=None)
    layer = SimpleNamespace(layer_id=0, tp_q_head_num=HQ, qk_head_dim=D, v_head_dim=D, scaling=D**-0.5,
                            sliding_window_size=window or None, logit_cap=cap or None)
    backend = TorchNativeAttnBackend(SimpleNamespace(device="cpu"))
    assert backend.cpu_ops is None
    return backend.forward_decode(q, None, None, layer, fb, save_kv_cache=False)


def _kernel_decode(cpu_ext, vector, q, k_buf, v_buf, table, rows, lens, window: int = 0, cap: float = 0.0):
    return cpu_ext.decode_attention(q, k_buf, v_buf, table, rows, lens, D, D**-0.5, window, cap, vector)


def _check_attention(cpu_ext, vector, lens: Sequence[int], window: int, cap: float, seed: int) -> None:
    case = _attention_case(lens, seed)
    want = _torch_decode(*case, window=window, cap=cap)
    got = _kernel_decode(cpu_ext, vector, *case, window=window, cap=cap)
    _close(got, want, rtol=1e-5, atol=ATTN_ATOL)


@pytest.mark.parametrize("lens", [[1], [1, 1, 1], [5, 1, 33, 17], [TABLE_WIDTH, 2]])
@pytest.mark.parametrize("window", [0, 1, 4, 16, 1000])
@pytest.mark.parametrize("cap", [0.0, 2.0])
def test_decode_attention_matches_torch_backend(cpu_ext, vector, lens, window, cap):
    _check_attention(cpu_ext, vector, lens, window, cap, seed=len(lens) + window)


@settings(max_examples=40, deadline=None)
@given(lens=st.lists(st.integers(1, TABLE_WIDTH), min_size=1, max_size=TABLE_ROWS),
       window=st.sampled_from([0, 1, 2, 7, 31, TABLE_WIDTH + 5]), cap=st.sampled_from([0.0, 1.0, 30.0]),
       vector=st.booleans(), seed=st.integers(0, 2**16))
def test_decode_attention_property(cpu_ext, lens, window, cap, vector, seed):
    _check_attention(cpu_ext, vector and cpu_ext.vector_path(), lens, window, cap, seed)


def test_decode_attention_uses_each_query_heads_own_kv_head(cpu_ext, vector):
    """Only KV head 1 differs between two caches: exactly query heads 3..5 (its group) may change."""
    q, k_buf, v_buf, table, rows, lens = _attention_case([9, 4], seed=11)
    base = _kernel_decode(cpu_ext, vector, q, k_buf, v_buf, table, rows, lens)
    v2 = v_buf.clone()
    v2[:, 1] += 1.0
    out = _kernel_decode(cpu_ext, vector, q, k_buf, v2, table, rows, lens)
    changed = (out - base).view(2, HQ, D).abs().amax(dim=(0, 2)) > 0.5
    assert changed.tolist() == [h // (HQ // HK) == 1 for h in range(HQ)]


# ---------------------------------------------------------------- malformed inputs


def test_norm_and_silu_reject_bad_inputs(cpu_ext):
    x, w = torch.randn(2, 8), torch.ones(8)
    with pytest.raises(RuntimeError, match="float32"):
        cpu_ext.rms_norm(x.double(), None, w, EPS, True)
    with pytest.raises(RuntimeError, match="weight of H entries"):
        cpu_ext.rms_norm(x, None, torch.ones(7), EPS, True)
    with pytest.raises(RuntimeError, match="residual must match"):
        cpu_ext.rms_norm(x, torch.randn(3, 8), w, EPS, True)
    with pytest.raises(RuntimeError, match="float32"):
        cpu_ext.silu_and_mul(x.half(), True)
    with pytest.raises(RuntimeError, match=r"\[T, 2D\]"):
        cpu_ext.silu_and_mul(torch.randn(2, 7), True)


def _rope_call(cpu_ext, positions, q, k, v, rope, k_buf, v_buf, out_loc, head_dim=64):
    cpu_ext.rope_store_kv(positions, q, k, v, rope.cos_cache, rope.sin_cache, head_dim, k_buf, v_buf, out_loc, True)


@pytest.mark.parametrize("bad", ["position_negative", "position_past_table", "slot_negative", "slot_past_pool",
                                 "positions_int32", "out_loc_short", "no_out_loc", "v_buf_smaller",
                                 "k_buf_head_dim", "head_dim_zero"])
def test_rope_store_kv_rejects_bad_inputs_before_writing(cpu_ext, bad):
    rope, qkv, positions, out_loc, k_buf, v_buf = _rope_case(4, 64, 64, 20, seed=5)
    head_dim = 64
    if bad == "position_negative":
        positions[2] = -1
    elif bad == "position_past_table":
        positions[2] = 20
    elif bad == "slot_negative":
        out_loc[3] = -1
    elif bad == "slot_past_pool":
        out_loc[3] = NUM_SLOTS
    elif bad == "positions_int32":
        positions = positions.int()
    elif bad == "out_loc_short":
        out_loc = out_loc[:3]
    elif bad == "no_out_loc":
        out_loc = None
    elif bad == "v_buf_smaller":
        v_buf = v_buf[:10].clone()
    elif bad == "k_buf_head_dim":
        k_buf = k_buf.view(NUM_SLOTS, HK * 2, 32)
    elif bad == "head_dim_zero":
        head_dim = 0
    before = [t.clone() for t in (qkv, k_buf, v_buf)]
    with pytest.raises(RuntimeError, match="rope_store_kv"):
        _rope_call(cpu_ext, positions, *_split_qkv(qkv, 64), rope, k_buf, v_buf, out_loc, head_dim)
    assert all(torch.equal(a, b) for a, b in zip((qkv, k_buf, v_buf), before)), "nothing may change on error"


@pytest.mark.parametrize("bad,message", [
    ("row_past_table", "outside req_to_token"),
    ("row_negative", "outside req_to_token"),
    ("len_zero", "sequence length"),
    ("len_past_width", "sequence length"),
    ("slot_past_pool", "outside the 600 slots"),
    ("slot_negative", "outside the 600 slots"),
    ("table_int64", "int32|Int"),
    ("lens_int32", "Long|int64"),
    ("rows_count", "one per request"),
    ("head_dim_mismatch", "K/V buffers"),
])
def test_decode_attention_rejects_bad_inputs(cpu_ext, vector, bad, message):
    q, k_buf, v_buf, table, rows, lens = _attention_case([6, 3], seed=2)
    if bad == "row_past_table":
        rows[1] = TABLE_ROWS
    elif bad == "row_negative":
        rows[0] = -1
    elif bad == "len_zero":
        lens[1] = 0
    elif bad == "len_past_width":
        lens[0] = TABLE_WIDTH + 1
    elif bad == "slot_past_pool":
        table[rows[0], 5] = NUM_SLOTS
    elif bad == "slot_negative":
        table[rows[1], 0] = -7
    elif bad == "table_int64":
        table = table.long()
    elif bad == "lens_int32":
        lens = lens.int()
    elif bad == "rows_count":
        rows = rows[:1]
    elif bad == "head_dim_mismatch":
        k_buf, v_buf = k_buf.view(NUM_SLOTS, HK * 2, D // 2), v_buf.view(NUM_SLOTS, HK * 2, D // 2)
    with pytest.raises(RuntimeError, match=message):
        _kernel_decode(cpu_ext, vector, q, k_buf, v_buf, table, rows, lens)


def test_decode_attention_checks_only_the_slots_it_reads(cpu_ext, vector):
    """A stale id past a request's length, or before its window, is never read: no error."""
    q, k_buf, v_buf, table, rows, lens = _attention_case([6, 3], seed=4)
    table[rows[0], 6:] = NUM_SLOTS + 100  # past the length
    table[rows[1], 0] = -1  # outside a window of 2 over 3 tokens
    want = _torch_decode(q, k_buf, v_buf, table.clamp(0, NUM_SLOTS - 1), rows, lens, window=2, cap=0.0)
    _close(_kernel_decode(cpu_ext, vector, q, k_buf, v_buf, table, rows, lens, window=2), want, rtol=1e-5,
           atol=ATTN_ATOL)
    with pytest.raises(RuntimeError, match="KV slot -1"):
        _kernel_decode(cpu_ext, vector, q, k_buf, v_buf, table, rows, lens, window=3)
