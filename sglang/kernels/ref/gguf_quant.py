"""Plain-torch twins of the GGUF block kernels (`sglang.kernels.cpu.gguf`): the same signatures,
dequantizing exactly as the `gguf` package does (float32 multiply, then add), then a float32 matmul.

A weight is a uint8 tensor [rows, blocks_per_row * block_bytes]: each row is the GGUF tensor's
row of 32-weight blocks, byte for byte as the file stores them.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

GGUF_BLOCK = 32
# ggml type id -> (name, bytes per 32-weight block), for the types the CPU kernels compute on.
GGUF_KERNEL_TYPES: Dict[int, Tuple[str, int]] = {2: ("Q4_0", 18), 3: ("Q4_1", 20), 8: ("Q8_0", 34)}


def block_bytes(qtype: int) -> int:
    if qtype not in GGUF_KERNEL_TYPES:
        names = ", ".join(f"{name} ({tid})" for tid, (name, _) in GGUF_KERNEL_TYPES.items())
        raise ValueError(f"GGUF tensor type id {qtype} has no block kernel; supported: {names}")
    return GGUF_KERNEL_TYPES[qtype][1]


def row_weights(w: torch.Tensor, qtype: int) -> int:
    """Weights per row of the block tensor `w`."""
    nbytes = block_bytes(qtype)
    if w.dim() != 2 or w.shape[1] % nbytes:
        raise ValueError(f"GGUF blocks of type {qtype} must be [rows, k * {nbytes}] uint8, got {tuple(w.shape)}")
    return w.shape[1] // nbytes * GGUF_BLOCK


def _halves(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The 16 bytes of nibbles from `start` as 32 values: low nibbles (weights 0-15), then high."""
    qs = blocks[..., start : start + 16]
    return torch.cat([qs & 0x0F, qs >> 4], dim=-1)


def _half_at(blocks: torch.Tensor, start: int) -> torch.Tensor:
    return blocks[..., start : start + 2].contiguous().view(torch.float16).float()


def gguf_dequantize(w: torch.Tensor, qtype: int) -> torch.Tensor:
    """uint8 blocks [N, K/32 * block bytes] -> float32 [N, K], as gguf.quants.dequantize."""
    k = row_weights(w, qtype)
    blocks = w.reshape(w.shape[0], k // GGUF_BLOCK, block_bytes(qtype))
    d = _half_at(blocks, 0)
    if qtype == 8:  # Q8_0: q * d
        values = blocks[..., 2:].contiguous().view(torch.int8).float() * d
    elif qtype == 2:  # Q4_0: d * (q - 8)
        values = d * (_halves(blocks, 2).to(torch.int16) - 8).float()
    else:  # Q4_1: d * q + m
        values = d * _halves(blocks, 4).float() + _half_at(blocks, 2)
    return values.reshape(w.shape[0], k)


def gguf_gemm(x: torch.Tensor, w: torch.Tensor, qtype: int, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """float32 [M, N] = x [M, K] @ dequantize(w)^T (+ bias)."""
    return F.linear(x.float(), gguf_dequantize(w, qtype), None if bias is None else bias.float())


def gguf_embedding(ids: torch.Tensor, w: torch.Tensor, qtype: int) -> torch.Tensor:
    """float32 rows of the dequantized table at `ids` (only those rows are dequantized)."""
    return gguf_dequantize(w.index_select(0, ids.reshape(-1)), qtype).reshape(*ids.shape, -1)
