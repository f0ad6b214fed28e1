"""Mixture-of-experts experts as two grouped GEMMs in Triton (CUDA tensors only).

Twin: `sglang.runtime.layers.moe.experts_torch.fused_experts_torch` with SiLU(gate) * up.

The (token, slot) rows of the routing are sorted by expert and each expert's segment is padded
to a multiple of BLOCK_M (`align_rows`, torch ops, no host sync: the padded length is bounded by
T*k + E*(BLOCK_M - 1)), so every M-block of rows belongs to one expert and a program multiplies
that block by its expert's weights only:

  1. gate_up: rows of x (gathered by token) x w13[e]^T, gate and up tiles in one program, written
     as SiLU(gate) * up  -> act [padded rows, I];
  2. down: act x w2[e]^T, times the row's routing weight, scattered back to (token, slot) order;
the k slot outputs of a token are summed last. Blocks past the real rows carry expert -1 and exit.

Status: checked against the twin under Triton's interpreter on the CPU
(tests/models/test_moe_triton_interpret.py) and compiled on an H100 (tests/gpu/test_fused_moe_gpu.py,
all passed; benchmarks/results/fused_moe_h100_2026-12-07.json). `FusedMoE` calls it on CUDA for
SiLU experts, eager and under CUDA graphs (no host reads). At one token it reaches ~1.1 TB/s of
the active experts' bytes (the twin, which reads the routing on the host and cannot be captured,
~1.5 TB/s); at 64+ tokens ~2 TB/s, on a par with the twin; `config` lets benchmarks sweep tiles.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from sglang.runtime.layers.moe.experts_torch import expert_counts


def align_rows(topk_ids: torch.Tensor, num_experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows [P] flat (token*k + slot) index or T*k for padding, block_expert [P / block_m] or -1)."""
    flat = topk_ids.reshape(-1)
    n = flat.numel()
    order = torch.sort(flat, stable=True).indices
    counts = expert_counts(flat, num_experts)  # no host read: CUDA-graph capturable
    padded = (counts + block_m - 1) // block_m * block_m
    seg_start = torch.cumsum(padded, 0) - padded  # padded start of each expert's segment
    raw_start = torch.cumsum(counts, 0) - counts
    sorted_expert = flat[order]
    rank_in_expert = torch.arange(n, device=flat.device) - raw_start[sorted_expert]
    capacity = n + num_experts * (block_m - 1)
    capacity = (capacity + block_m - 1) // block_m * block_m
    rows = torch.full((capacity,), n, dtype=torch.int64, device=flat.device)
    rows[seg_start[sorted_expert] + rank_in_expert] = order
    block_start = torch.arange(0, capacity, block_m, device=flat.device)
    seg_end = seg_start + padded
    # expert of each block: the segment containing its first row (-1 past the last segment)
    block_expert = torch.searchsorted(seg_end, block_start, right=True)
    block_expert = torch.where(block_start < seg_end[-1], block_expert, torch.full_like(block_expert, -1))
    return rows, block_expert


@triton.jit
def _gate_up_kernel(x_ptr, w_ptr, act_ptr, rows_ptr, block_expert_ptr, n_rows, top_k, H, I,
                    stride_x, stride_we, stride_wn, stride_act,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rows = tl.load(rows_ptr + offs_m)
    valid = rows < n_rows
    tokens = tl.where(valid, rows // top_k, 0)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < I
    gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    for k0 in range(0, H, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < H
        a = tl.load(x_ptr + tokens[:, None].to(tl.int64) * stride_x + offs_k[None, :],
                    mask=valid[:, None] & k_ok[None, :], other=0.0)
        w_mask = k_ok[:, None] & n_ok[None, :]
        wg = tl.load(w_base + offs_n[None, :] * stride_wn + offs_k[:, None], mask=w_mask, other=0.0)
        wu = tl.load(w_base + (offs_n[None, :] + I) * stride_wn + offs_k[:, None], mask=w_mask, other=0.0)
        if IEEE:
            gate += tl.dot(a, wg, input_precision="ieee")
            up += tl.dot(a, wu, input_precision="ieee")
        else:
            gate += tl.dot(a, wg)
            up += tl.dot(a, wu)
    act = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(act_ptr + offs_m[:, None].to(tl.int64) * stride_act + offs_n[None, :],
             act.to(act_ptr.dtype.element_ty), mask=valid[:, None] & n_ok[None, :])


@triton.jit
def _down_kernel(act_ptr, w_ptr, out_ptr, rows_ptr, block_expert_ptr, weights_ptr, n_rows, H, I,
                 stride_act, stride_we, stride_wn, stride_out,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rows = tl.load(rows_ptr + offs_m)
    valid = rows < n_rows
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < H
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    for k0 in range(0, I, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_ok = offs_k < I
        a = tl.load(act_ptr + offs_m[:, None].to(tl.int64) * stride_act + offs_k[None, :],
                    mask=valid[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_base + offs_n[None, :] * stride_wn + offs_k[:, None],
                    mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if IEEE:
            acc += tl.dot(a, w, input_precision="ieee")
        else:
            acc += tl.dot(a, w)
    weight = tl.load(weights_ptr + tl.where(valid, rows, 0), mask=valid, other=0.0)
    acc = acc * weight[:, None]
    tl.store(out_ptr + tl.where(valid, rows, 0)[:, None].to(tl.int64) * stride_out + offs_n[None, :],
             acc.to(out_ptr.dtype.element_ty), mask=valid[:, None] & n_ok[None, :])


def _block_m(rows: int, num_experts: int) -> int:
    # Few rows per expert (decode): the smallest tile tl.dot takes; prefill: larger tiles.
    return 16 if rows <= 4 * num_experts * 16 else 64


def fused_experts(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                  topk_ids: torch.Tensor, config: Optional[Tuple[int, int, int, int]] = None) -> torch.Tensor:
    """sum_j w[t, j] * down_e(SiLU(gate_e x_t) * up_e x_t), e = ids[t, j]; x [T, H] -> [T, H].
    `config` (BLOCK_N, BLOCK_K, num_warps, num_stages) overrides the tiles (benchmark sweeps)."""
    tokens, top_k = topk_ids.shape
    num_experts, two_i, hidden = w13.shape
    inter = two_i // 2
    x, w13, w2 = x.contiguous(), w13.contiguous(), w2.contiguous()
    n_rows = tokens * top_k
    block_m = _block_m(n_rows, num_experts)
    rows, block_expert = align_rows(topk_ids, num_experts, block_m)
    act = torch.empty(rows.numel(), inter, dtype=x.dtype, device=x.device)
    out = torch.empty(n_rows, hidden, dtype=x.dtype, device=x.device)
    weights = topk_weights.reshape(-1).float().contiguous()
    ieee = x.dtype == torch.float32
    bn, bk = 64, 64 if x.dtype != torch.float32 else 32
    launch = {}
    if config is not None:
        bn, bk, launch["num_warps"], launch["num_stages"] = config
    grid1 = (block_expert.numel(), triton.cdiv(inter, bn))
    _gate_up_kernel[grid1](x, w13, act, rows, block_expert, n_rows, top_k, hidden, inter,
                           x.stride(0), w13.stride(0), w13.stride(1), act.stride(0),
                           BLOCK_M=block_m, BLOCK_N=bn, BLOCK_K=bk, IEEE=ieee, **launch)
    grid2 = (block_expert.numel(), triton.cdiv(hidden, bn))
    _down_kernel[grid2](act, w2, out, rows, block_expert, weights, n_rows, hidden, inter,
                        act.stride(0), w2.stride(0), w2.stride(1), out.stride(0),
                        BLOCK_M=block_m, BLOCK_N=bn, BLOCK_K=bk, IEEE=ieee, **launch)
    return out.view(tokens, top_k, hidden).sum(dim=1)
