"""torch_native attention vs a naive per-query reference, over random batches (hypothesis)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import List, Optional

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.layers.attention.radix_attention import RadixAttention
from sglang.runtime.layers.attention.registry import (
    attention_backend_names,
    create_attention_backend,
    get_attention_backend_class,
)
from sglang.runtime.layers.attention.torch_native_backend import TorchNativeAttnBackend
from sglang.runtime.model_executor.forward_batch import ForwardMode
from tests.models.harness import KVHarness

HEAD_DIM = 8


def naive_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, prefix: int, scale: float,
                    cap: float, window: Optional[int]) -> torch.Tensor:
    """q [L, H, D] at positions prefix.., keys/values [S, KVH, D] for positions 0..S-1 -> [L, H*D]."""
    q, keys, values = q.double(), keys.double(), values.double()
    group = q.shape[1] // keys.shape[1]
    rows = []
    for j in range(q.shape[0]):
        p = prefix + j
        visible = [kpos for kpos in range(p + 1) if not window or p - kpos < window]
        heads = []
        for h in range(q.shape[1]):
            k, v = keys[visible, h // group], values[visible, h // group]
            s = (k @ q[j, h]) * scale
            if cap:
                s = cap * torch.tanh(s / cap)
            heads.append(torch.softmax(s, dim=0) @ v)
        rows.append(torch.cat(heads))
    return torch.stack(rows).float()


class _Batch:
    """Random K/V history per request, mirrored in the harness's pool."""

    def __init__(self, num_heads: int, num_kv_heads: int, seed: int):
        self.h = KVHarness(None, 1, num_kv_heads, HEAD_DIM, max_reqs=6, max_context=64, pool_size=600)
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.gen = torch.Generator().manual_seed(seed)
        self.keys: dict = {}
        self.values: dict = {}

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen)

    def run(self, layer: RadixAttention, rows: List[int], lens: List[int], mode: ForwardMode) -> tuple:
        chunks = [[0] * n for n in lens]
        fb = (self.h.decode_batch(rows, [0] * len(rows)) if mode == ForwardMode.DECODE
              else self.h.extend_batch(rows, chunks, mode=mode))
        total = sum(lens)
        q = self.rand(total, self.num_heads * HEAD_DIM)
        k = self.rand(total, self.num_kv_heads * HEAD_DIM)
        v = self.rand(total, self.num_kv_heads * HEAD_DIM)
        prefixes = [self.h.seq_lens[r] for r in rows]
        offset = 0
        for r, n in zip(rows, lens):
            kr = k[offset : offset + n].view(n, self.num_kv_heads, HEAD_DIM)
            vr = v[offset : offset + n].view(n, self.num_kv_heads, HEAD_DIM)
            self.keys[r] = torch.cat([self.keys.get(r, kr[:0]), kr])
            self.values[r] = torch.cat([self.values.get(r, vr[:0]), vr])
            offset += n
        self.h.backend.init_forward_metadata(fb)
        out = self.h.backend.forward(q, k, v, layer, fb)
        self.h.commit(rows, chunks)
        return q, out, prefixes

    def check(self, layer: RadixAttention, rows: List[int], lens: List[int], q, out, prefixes) -> None:
        offset = 0
        for r, n, prefix in zip(rows, lens, prefixes):
            qr = q[offset : offset + n].view(n, self.num_heads, HEAD_DIM)
            ref = naive_attention(qr, self.keys[r], self.values[r], prefix, layer.scaling, layer.logit_cap,
                                  layer.sliding_window_size)
            torch.testing.assert_close(out[offset : offset + n], ref, rtol=1e-4, atol=1e-5)
            offset += n


heads_st = st.sampled_from([(4, 4), (4, 2), (4, 1), (2, 1)])


@settings(max_examples=25, deadline=None)
@given(heads=heads_st, prefixes=st.lists(st.integers(0, 12), min_size=1, max_size=4),
       ext=st.lists(st.integers(1, 6), min_size=4, max_size=4), window=st.sampled_from([None, 1, 3, 8]),
       cap=st.sampled_from([0.0, 5.0]), mixed=st.booleans(), seed=st.integers(0, 1000))
def test_extend_matches_naive(heads, prefixes, ext, window, cap, mixed, seed):
    b = _Batch(*heads, seed)
    layer = RadixAttention(heads[0], HEAD_DIM, 0.3 + seed / 2000, heads[1], 0, logit_cap=cap,
                           sliding_window_size=window)
    rows = [b.h.new_request() for _ in prefixes]
    with_prefix = [(r, p) for r, p in zip(rows, prefixes) if p]
    if with_prefix:
        b.run(layer, [r for r, _ in with_prefix], [p for _, p in with_prefix], ForwardMode.EXTEND)
    lens = ext[: len(rows)]
    mode = ForwardMode.MIXED if mixed else ForwardMode.EXTEND
    b.check(layer, rows, lens, *b.run(layer, rows, lens, mode))


@settings(max_examples=25, deadline=None)
@given(heads=heads_st, prefixes=st.lists(st.integers(1, 20), min_size=1, max_size=5),
       window=st.sampled_from([None, 1, 4, 16]), cap=st.sampled_from([0.0, 5.0]), seed=st.integers(0, 1000))
def test_decode_matches_naive(heads, prefixes, window, cap, seed):
    b = _Batch(*heads, seed)
    layer = RadixAttention(heads[0], HEAD_DIM, HEAD_DIM**-0.5, heads[1], 0, logit_cap=cap,
                           sliding_window_size=window)
    rows = [b.h.new_request() for _ in prefixes]
    b.run(layer, rows, prefixes, ForwardMode.EXTEND)
    for _ in range(2):  # two steps: the second reads KV written by the first decode
        b.check(layer, rows, [1] * len(rows), *b.run(layer, rows, [1] * len(rows), ForwardMode.DECODE))


def test_kv_is_written_at_out_cache_loc_unless_disabled():
    b = _Batch(2, 1, 0)
    layer = RadixAttention(2, HEAD_DIM, 1.0, 1, 0)
    row = b.h.new_request()
    fb = b.h.extend_batch([row], [[0, 0, 0]])
    k, v = b.rand(3, HEAD_DIM), b.rand(3, HEAD_DIM)
    b.h.backend.init_forward_metadata(fb)
    b.h.backend.forward(b.rand(3, 2 * HEAD_DIM), k, v, layer, fb, save_kv_cache=False)
    assert b.h.kv_pool.get_key_buffer(0)[fb.out_cache_loc].abs().sum() == 0
    b.h.backend.forward(b.rand(3, 2 * HEAD_DIM), k, v, layer, fb)
    torch.testing.assert_close(b.h.kv_pool.get_key_buffer(0)[fb.out_cache_loc].view(3, HEAD_DIM), k)
    torch.testing.assert_close(b.h.kv_pool.get_value_buffer(0)[fb.out_cache_loc].view(3, HEAD_DIM), v)


def test_registry_names_and_errors():
    names = attention_backend_names()
    assert "torch_native" in names and "triton" in names
    runner = SimpleNamespace(device="cpu", req_to_token_pool=None, kv_pool=None)
    assert isinstance(create_attention_backend("torch_native", runner), TorchNativeAttnBackend)
    with pytest.raises(ValueError, match="unknown attention backend 'nope'.*torch_native"):
        create_attention_backend("nope", runner)
    if "flashinfer" not in names:
        with pytest.raises(ImportError, match="needs the 'flashinfer' package"):
            get_attention_backend_class("flashinfer")
