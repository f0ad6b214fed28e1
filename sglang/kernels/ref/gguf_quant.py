"""Plain-torch twins of the GGUF block kernels (`sglang.kernels.cpu.gguf`), with the same signatures.

A weight is a uint8 tensor [rows, blocks_per_row * block_bytes]: each row is the GGUF tensor's
row of 32-weight blocks, byte for byte as the file stores them.

- `gguf_dequantize`: exactly as the `gguf` package dequantizes (float32 multiply, then add).
- `gguf_gemm`: the arithmetic of llama.cpp's CPU matmuls, which the kernel follows: x is
  quantized to int8 per 32-value block (scale max|x| / 127, round half to even), each block's dot
  product with the weights' integers is exact, and the float32 scales come in per block:
  Q8_0: d dx sum(q qx); Q4_0: d dx (sum(q qx) - 8 sum(qx)) with q the stored nibble; Q4_1:
  d dx sum(q qx) + m dx sum(qx). That is the exact dot product of the dequantized weights with the
  rounded x (dx qx), so it differs from a float32 matmul over the dequantized weights only by the
  activations' rounding (at most half a step, max|x| / 254, per entry of each 32-value block).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

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


def quantize_activations(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [M, K] float32 -> (int8 values [M, K/32, 32] as float, scale [M, K/32], sum of the int8
    values per block)."""
    blocks = x.float().reshape(x.shape[0], -1, GGUF_BLOCK)
    scale = blocks.abs().amax(dim=-1) / 127
    inv = torch.where(scale > 0, 1 / scale, torch.zeros_like(scale))
    q = torch.round(blocks * inv[..., None])
    return q, scale, q.sum(dim=-1)


def _weight_integers(w: torch.Tensor, qtype: int) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(stored integers [N, K/32, 32] as float: Q8_0's int8 or the 4-bit values 0..15, d, Q4_1's m)."""
    k = row_weights(w, qtype)
    blocks = w.reshape(w.shape[0], k // GGUF_BLOCK, block_bytes(qtype))
    if qtype == 8:
        return blocks[..., 2:].contiguous().view(torch.int8).float(), _half_at(blocks, 0)[..., 0], None
    start = 4 if qtype == 3 else 2
    m = _half_at(blocks, 2)[..., 0] if qtype == 3 else None
    return _halves(blocks, start).float(), _half_at(blocks, 0)[..., 0], m


def gguf_gemm(x: torch.Tensor, w: torch.Tensor, qtype: int, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """float32 [M, N] = x [M, K] times the blocks of w [N, ...], in llama.cpp's arithmetic (module doc)."""
    qx, dx, qsx = quantize_activations(x)
    qw, dw, mw = _weight_integers(w, qtype)
    isum = torch.einsum("mbj,nbj->mnb", qx.double(), qw.double())  # exact integers
    if qtype == 2:
        isum = isum - 8 * qsx.double()[:, None, :]
    y = ((dw[None] * dx[:, None]) * isum.float()).sum(dim=-1)
    if mw is not None:
        y = y + ((mw[None] * dx[:, None]) * qsx[:, None]).sum(dim=-1)
    return y if bias is None else y + bias.float()


def gguf_embedding(ids: torch.Tensor, w: torch.Tensor, qtype: int) -> torch.Tensor:
    """float32 rows of the dequantized table at `ids` (only those rows are dequantized)."""
    return gguf_dequantize(w.index_select(0, ids.reshape(-1)), qtype).reshape(*ids.shape, -1)
