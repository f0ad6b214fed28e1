"""Torch twin of `sglang.kernels.kv_indices.gather_kv_indices`."""

from __future__ import annotations

import torch


def gather_kv_indices(
    req_to_token: torch.Tensor,
    req_pool_indices: torch.Tensor,
    kv_indptr: torch.Tensor,
    kv_indices: torch.Tensor,
    max_len: int,
) -> torch.Tensor:
    bounds = kv_indptr.tolist()
    for i, row in enumerate(req_pool_indices.tolist()):
        start, end = bounds[i], bounds[i + 1]
        kv_indices[start:end] = req_to_token[row, : end - start]
    return kv_indices
