"""Flatten the KV slots of a batch into one index list: kv_indices[kv_indptr[i] + j] =
req_to_token[req_pool_indices[i], j] for j < kv_indptr[i + 1] - kv_indptr[i].

Attention libraries that take a paged cache as (indptr, indices) (FlashInfer with one token per
page) need this list every step. One launch builds it on the device from the table rows; the
torch twin is `sglang.kernels.ref.kv_indices.gather_kv_indices`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024  # slots copied per program; a grid column per BLOCK of the longest sequence


@triton.jit
def _gather_kv_indices_kernel(
    req_to_token, stride_row, req_pool_indices, kv_indptr, kv_indices, BLOCK_SIZE: tl.constexpr
):
    i = tl.program_id(0)
    chunk = tl.program_id(1)
    row = tl.load(req_pool_indices + i).to(tl.int64)
    start = tl.load(kv_indptr + i)
    length = tl.load(kv_indptr + i + 1) - start
    offs = chunk * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < length
    slots = tl.load(req_to_token + row * stride_row + offs, mask=mask)
    tl.store(kv_indices + start + offs, slots, mask=mask)


def _check(req_to_token: torch.Tensor, req_pool_indices: torch.Tensor, kv_indptr: torch.Tensor,
           kv_indices: torch.Tensor) -> None:
    if req_to_token.dim() != 2 or req_to_token.stride(1) != 1:
        raise ValueError(f"req_to_token must be a row-contiguous 2-D table, got shape {tuple(req_to_token.shape)}")
    if kv_indptr.shape[0] != req_pool_indices.shape[0] + 1:
        raise ValueError(f"kv_indptr needs batch size + 1 = {req_pool_indices.shape[0] + 1} entries, "
                         f"got {kv_indptr.shape[0]}")
    if kv_indices.dtype != req_to_token.dtype:
        raise ValueError(f"kv_indices dtype {kv_indices.dtype} must equal the table's {req_to_token.dtype}")


def gather_kv_indices(
    req_to_token: torch.Tensor,  # [rows, width] int32
    req_pool_indices: torch.Tensor,  # [bs] table row of each request
    kv_indptr: torch.Tensor,  # [bs + 1] int32, prefix sums of the sequence lengths
    kv_indices: torch.Tensor,  # [>= kv_indptr[-1]] int32, written in place
    max_len: int,  # longest sequence in the batch (host-side, sizes the grid)
) -> torch.Tensor:
    _check(req_to_token, req_pool_indices, kv_indptr, kv_indices)
    bs = req_pool_indices.shape[0]
    if bs == 0 or max_len <= 0:
        return kv_indices
    grid = (bs, triton.cdiv(max_len, BLOCK))
    _gather_kv_indices_kernel[grid](req_to_token, req_to_token.stride(0), req_pool_indices, kv_indptr,
                                    kv_indices, BLOCK_SIZE=BLOCK)
    return kv_indices
