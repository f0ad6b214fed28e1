"""Checks shared by the kernel tests: fresh random inputs, NaN-poisoned outputs, relative error
against the torch twins run in float64. Every check takes `device`, so the same code runs on CUDA
in the gpu tests and, for development, under TRITON_INTERPRET=1 on the CPU."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import List, Optional

import torch

BF16_TOL = 1e-2  # bf16 operands: errors land between 1e-3 and 1e-2


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out64, ref64 = out.double(), ref.double()
    return float((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30))


def assert_close(out: torch.Tensor, ref: torch.Tensor, tol: float = BF16_TOL, what: str = "") -> None:
    assert torch.isfinite(out).all(), f"{what}: non-finite output (an element left unwritten or overflow)"
    assert ref.abs().max() > 0, f"{what}: degenerate all-zero reference"
    err = rel_err(out, ref)
    assert err < tol, f"{what}: relative error {err:.2e} >= {tol:.0e}"


def poisoned(shape, dtype, device) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


@dataclass
class PagedKV:
    k_buffer: torch.Tensor  # [slots, KVH, D]
    v_buffer: torch.Tensor
    req_to_token: torch.Tensor  # [max_reqs, max_ctx] int32
    req_pool_indices: torch.Tensor  # [bs] int64


def make_paged_kv(
    lens: List[int], num_kv_heads: int, head_dim: int, v_head_dim: int, dtype, device, gen: torch.Generator
) -> PagedKV:
    """A pool holding `lens[i]` tokens for request i at scattered slots, in scattered table rows.
    Table entries past each length point at other valid slots, so an over-read gives a wrong answer
    rather than a crash."""
    total = sum(lens)
    num_slots = total + 8
    k = torch.randn(num_slots, num_kv_heads, head_dim, generator=gen).to(dtype)
    v = torch.randn(num_slots, num_kv_heads, v_head_dim, generator=gen).to(dtype)
    bs, max_ctx = len(lens), max(lens + [1]) + 16
    max_reqs = bs + 3
    table = torch.randint(1, num_slots, (max_reqs, max_ctx), generator=gen, dtype=torch.int32)
    rows = torch.randperm(max_reqs, generator=gen)[:bs]
    slots = torch.randperm(num_slots - 1, generator=gen)[:total].to(torch.int32) + 1
    offset = 0
    for row, n in zip(rows.tolist(), lens):
        table[row, :n] = slots[offset : offset + n]
        offset += n
    return PagedKV(k.to(device), v.to(device), table.to(device), rows.to(device))


def check_decode(
    device: str,
    lens: List[int],
    num_heads: int = 8,
    num_kv_heads: int = 2,
    head_dim: int = 128,
    v_head_dim: Optional[int] = None,
    logit_cap: float = 0.0,
    sliding_window: Optional[int] = None,
    num_kv_splits: int = 8,
    scale_mult: float = 1.0,
    dtype=torch.bfloat16,
    seed: int = 0,
    use_scratch: bool = False,
) -> float:
    from sglang.kernels.decode_attention import decode_attention_fwd, decode_scratch
    from sglang.kernels.ref.decode_attention import decode_attention_fwd as decode_ref

    gen = torch.Generator().manual_seed(seed)
    v_head_dim = v_head_dim or head_dim
    kv = make_paged_kv(lens, num_kv_heads, head_dim, v_head_dim, dtype, device, gen)
    bs = len(lens)
    q = torch.randn(bs, num_heads, head_dim, generator=gen).to(dtype).to(device)
    seq_lens = torch.tensor(lens, dtype=torch.int64, device=device)
    sm_scale = scale_mult / head_dim**0.5
    o = poisoned((bs, num_heads, v_head_dim), dtype, device)
    scratch = decode_scratch(bs + 2, num_heads, num_kv_splits, v_head_dim, device) if use_scratch else None
    args = (kv.req_to_token, kv.req_pool_indices, seq_lens, sm_scale, logit_cap, sliding_window, num_kv_splits)
    decode_attention_fwd(q, kv.k_buffer, kv.v_buffer, o, *args, attn_logits=scratch)
    ref = torch.empty(bs, num_heads, v_head_dim, dtype=torch.float64, device=device)
    decode_ref(q.double(), kv.k_buffer.double(), kv.v_buffer.double(), ref, *args)
    if all(n == 0 for n in lens):
        assert (o == 0).all(), "zero-length rows must give zeros"
        return 0.0
    assert_close(o, ref, what=f"decode lens={lens} D={head_dim} cap={logit_cap} window={sliding_window}")
    return rel_err(o, ref)


def check_extend(
    device: str,
    prefix_lens: List[int],
    extend_lens: List[int],
    num_heads: int = 8,
    num_kv_heads: int = 2,
    head_dim: int = 128,
    v_head_dim: Optional[int] = None,
    logit_cap: float = 0.0,
    sliding_window: Optional[int] = None,
    scale_mult: float = 1.0,
    dtype=torch.bfloat16,
    seed: int = 0,
) -> float:
    from sglang.kernels.extend_attention import extend_attention_fwd
    from sglang.kernels.ref.extend_attention import extend_attention_fwd as extend_ref

    gen = torch.Generator().manual_seed(seed)
    v_head_dim = v_head_dim or head_dim
    kv = make_paged_kv(prefix_lens, num_kv_heads, head_dim, v_head_dim, dtype, device, gen)
    n = sum(extend_lens)
    q = torch.randn(n, num_heads, head_dim, generator=gen).to(dtype).to(device)
    k = torch.randn(n, num_kv_heads, head_dim, generator=gen).to(dtype).to(device)
    v = torch.randn(n, num_kv_heads, v_head_dim, generator=gen).to(dtype).to(device)
    ext = torch.tensor(extend_lens, dtype=torch.int64, device=device)
    seq_lens = torch.tensor(prefix_lens, dtype=torch.int64, device=device) + ext
    start = torch.cumsum(ext, 0) - ext
    sm_scale = scale_mult / head_dim**0.5
    tail = (kv.req_to_token, kv.req_pool_indices, seq_lens, ext, start, max(extend_lens), sm_scale, logit_cap, sliding_window)
    o = poisoned((n, num_heads, v_head_dim), dtype, device)
    extend_attention_fwd(q, k, v, o, kv.k_buffer, kv.v_buffer, *tail)
    ref = torch.empty(n, num_heads, v_head_dim, dtype=torch.float64, device=device)
    extend_ref(q.double(), k.double(), v.double(), ref, kv.k_buffer.double(), kv.v_buffer.double(), *tail)
    assert_close(o, ref, what=f"extend prefix={prefix_lens} ext={extend_lens} D={head_dim} cap={logit_cap} window={sliding_window}")
    return rel_err(o, ref)


def check_rmsnorm(device: str, rows: int, hidden: int, gemma: bool = False, dtype=torch.bfloat16, seed: int = 0) -> None:
    from sglang.kernels import rmsnorm as fast
    from sglang.kernels.ref import rmsnorm as ref

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, hidden, generator=gen).to(dtype).to(device)
    residual = torch.randn(rows, hidden, generator=gen).to(dtype).to(device)
    weight = (1.0 + 0.3 * torch.randn(hidden, generator=gen)).to(dtype).to(device)
    eps = 1e-5

    out = poisoned((rows, hidden), dtype, device)
    assert fast.rmsnorm(x, weight, eps, gemma, out=out) is out
    assert_close(out, ref.rmsnorm(x.double(), weight.double(), eps, gemma), what="rmsnorm")

    x64, r64 = x.double(), residual.double()
    ref.fused_add_rmsnorm(x64, r64, weight.double(), eps, gemma)
    x_fast, r_fast = fast.fused_add_rmsnorm(x, residual, weight, eps, gemma)
    assert x_fast is x and r_fast is residual, "fused_add_rmsnorm must work in place and return its inputs"
    assert_close(residual, r64, tol=5e-3, what="fused residual")
    assert_close(x, x64, what="fused normed")


def check_silu_and_mul(device: str, rows: int, inter: int, dtype=torch.bfloat16, seed: int = 0) -> None:
    from sglang.kernels.activation import silu_and_mul
    from sglang.kernels.ref.activation import silu_and_mul as silu_ref

    gen = torch.Generator().manual_seed(seed)
    x = (2 * torch.randn(rows, 2 * inter, generator=gen)).to(dtype).to(device)
    out = poisoned((rows, inter), dtype, device)
    assert silu_and_mul(x, out=out) is out
    assert_close(out, silu_ref(x.double()), what="silu_and_mul")
    assert_close(silu_and_mul(x.view(rows, 1, 2 * inter)).view(rows, inter), out, tol=1e-6, what="silu 3-D")


def check_gemv(device: str, n: int, k: int, prologue: str = "none", bias: bool = False, residual: bool = False,
               dtype=torch.bfloat16, seed: int = 0) -> None:
    """The fused GEMV vs its float64 twin, for one prologue ("none", "rmsnorm", "silu_mul") with or
    without bias and the in-place residual epilogue; the output starts NaN-poisoned."""
    from sglang.kernels.gemv import gemv
    from sglang.kernels.ref.gemv import gemv as gemv_ref

    gen = torch.Generator().manual_seed(seed)
    width = 2 * k if prologue == "silu_mul" else k
    x = (2 * torch.randn(1, width, generator=gen)).to(dtype).to(device)
    w = (torch.randn(n, k, generator=gen) * k**-0.5).to(dtype).to(device)
    b = (0.1 * torch.randn(n, generator=gen)).to(dtype).to(device) if bias else None
    g = (1.0 + 0.3 * torch.randn(k, generator=gen)).to(dtype).to(device) if prologue == "rmsnorm" else None
    r = torch.randn(1, n, generator=gen).to(dtype).to(device) if residual else None
    kw = dict(norm_weight=g, eps=1e-5, silu_mul=prologue == "silu_mul")
    ref = gemv_ref(x.double(), w.double(), None if b is None else b.double(), **kw,
                   residual=None if r is None else r.double())
    what = f"gemv[{n}x{k}, {prologue}, bias={bias}, residual={residual}]"
    if r is None:
        out = gemv(x, w, b, **kw)
        assert out.shape == (1, n) and out.dtype == dtype, what
        assert_close(out, ref, what=what)
        return
    # r ~ N(0, 1) and the product ~ N(0, 4): a missing or doubled add is an O(1) error.
    assert gemv(x, w, b, **kw, residual=r) is r, f"{what}: must update and return the residual"
    assert_close(r, ref, what=what)


LLAMA3_SCALING = {
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
}


def _rotary_inputs(device: str, num_tokens: int, num_heads: int, num_kv_heads: int, head_dim: int, rot_dim: int,
                   dtype, gen: torch.Generator, max_pos: int) -> tuple:
    """(llama3-scaled cos/sin cache, random positions, random fused qkv [num_tokens, q | k | v])."""
    from sglang.kernels.ref.rotary import build_cos_sin_cache

    cache = build_cos_sin_cache(rot_dim, max_pos, base=500000.0, rope_scaling=LLAMA3_SCALING, device=device)
    positions = torch.randint(0, max_pos, (num_tokens,), generator=gen).to(device)
    width = (num_heads + 2 * num_kv_heads) * head_dim
    qkv = torch.randn(num_tokens, width, generator=gen).to(dtype).to(device)
    return cache, positions, qkv


def check_rotary(
    device: str,
    num_tokens: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    rot_dim: int,
    is_neox: bool,
    dtype=torch.bfloat16,
    seed: int = 0,
) -> None:
    """q and k are strided views into one fused qkv tensor, as a model produces them."""
    from sglang.kernels.ref.rotary import apply_rotary as rotary_ref
    from sglang.kernels.rotary import apply_rotary

    gen = torch.Generator().manual_seed(seed)
    cache, positions, qkv = _rotary_inputs(device, num_tokens, num_heads, num_kv_heads, head_dim, rot_dim,
                                           dtype, gen, max_pos=20000)
    q_width, k_width = num_heads * head_dim, num_kv_heads * head_dim
    before = qkv.clone()
    q, k = qkv[:, :q_width], qkv[:, q_width : q_width + k_width]
    q_ref, k_ref = q.double().clone(), k.double().clone()
    rotary_ref(positions, q_ref, k_ref, cache.double(), head_dim, is_neox)
    assert apply_rotary(positions, q, k, cache, head_dim, is_neox)[0] is q
    assert_close(q, q_ref, what="rotary q")
    assert_close(k, k_ref, what="rotary k")
    assert torch.equal(qkv[:, q_width + k_width :], before[:, q_width + k_width :]), "v must be untouched"
    heads = qkv[:, :q_width].view(num_tokens, num_heads, head_dim)
    assert torch.equal(heads[..., rot_dim:], before[:, :q_width].view(num_tokens, num_heads, head_dim)[..., rot_dim:])


def check_rotary_and_store_kv(
    device: str,
    num_tokens: int,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    rot_dim: int,
    is_neox: bool,
    dtype=torch.bfloat16,
    seed: int = 0,
) -> None:
    """The fused rotary + KV write: q/k rotated in place like `apply_rotary`, the rotated k and the
    untouched v land in their slots of the pool (scattered, as after allocation churn), and every
    other slot keeps its contents."""
    from sglang.kernels.ref.rotary import rotary_and_store_kv as fused_ref
    from sglang.kernels.rotary import rotary_and_store_kv

    gen = torch.Generator().manual_seed(seed)
    cache, positions, qkv = _rotary_inputs(device, num_tokens, num_heads, num_kv_heads, head_dim, rot_dim,
                                           dtype, gen, max_pos=4096)
    slots = 3 * num_tokens + 5
    out_loc = (torch.randperm(slots - 1, generator=gen)[:num_tokens] + 1).to(device)
    q_width, k_width = num_heads * head_dim, num_kv_heads * head_dim
    k_buf = torch.randn(slots, num_kv_heads, head_dim, generator=gen).to(dtype).to(device)
    v_buf = torch.randn(slots, num_kv_heads, head_dim, generator=gen).to(dtype).to(device)
    ref = [t.double().clone() for t in (qkv, k_buf, v_buf)]
    ref_q, ref_k, ref_v = ref[0].split([q_width, k_width, k_width], dim=1)
    fused_ref(positions, ref_q, ref_k, ref_v, cache.double(), head_dim, ref[1], ref[2], out_loc, is_neox)
    q, k, v = qkv.split([q_width, k_width, k_width], dim=1)
    assert rotary_and_store_kv(positions, q, k, v, cache, head_dim, k_buf, v_buf, out_loc, is_neox)[0] is q
    assert_close(qkv, ref[0], what="rotated qkv")
    assert_close(k_buf, ref[1], what="k pool")
    assert torch.equal(v_buf, ref[2].to(dtype)), "v must be copied exactly and no other slot touched"
    untouched = torch.ones(slots, dtype=torch.bool, device=device)
    untouched[out_loc] = False
    assert torch.equal(k_buf[untouched], ref[1][untouched].to(dtype)), "k slots outside out_loc changed"


def check_gather_kv_indices(device: str, lens: List[int], seed: int = 0) -> None:
    """Triton gather of each request's table row prefix vs the twin: exact, and nothing written
    past kv_indptr[-1] (the tail stays -1)."""
    from sglang.kernels.kv_indices import gather_kv_indices
    from sglang.kernels.ref.kv_indices import gather_kv_indices as gather_ref

    gen = torch.Generator().manual_seed(seed)
    paged = make_paged_kv(lens, 1, 8, 8, torch.float32, device, gen)
    indptr = torch.tensor([0] + list(itertools.accumulate(lens)), dtype=torch.int32, device=device)
    out = torch.full((sum(lens) + 5,), -1, dtype=torch.int32, device=device)
    ref = out.clone()
    gather_kv_indices(paged.req_to_token, paged.req_pool_indices, indptr, out, max(lens + [0]))
    gather_ref(paged.req_to_token, paged.req_pool_indices, indptr, ref, max(lens + [0]))
    assert torch.equal(out, ref), "gathered KV indices differ from the twin"
    assert (out[sum(lens):] == -1).all(), "wrote past kv_indptr[-1]"
