"""INT4 weight-only arithmetic and the checkpoint layouts it is read from.

Our layout (one for AWQ and GPTQ, so one kernel serves both), per linear layer of N outputs and
K inputs in G groups:
- `qweight` uint8 [N, ceil(K/2)]: two 4-bit values a byte, input k in the low nibble when k is
  even, the high nibble when odd (rows are output features, so fused and column-parallel layers
  place them like a float weight);
- `scales` float32 [N, G] and `zeros` uint8 [N, G] (0..16: GPTQ's v1 files store zero - 1);
- `g_idx` int32 [K]: the group of each input (k // group_size, or GPTQ's act-order map).
weight[n, k] = (q[n, k] - zeros[n, g_idx[k]]) * scales[n, g_idx[k]].

Checkpoint layouts (int32 words of eight 4-bit values, value i at bits 4i..4i+3):
- AWQ (GEMM): qweight [K, N/8] and qzeros [G, N/8] packed along N in the order
  (0, 2, 4, 6, 1, 3, 5, 7): output column 8c + AWQ_ORDER[i] is value i of word c;
  scales [G, N].
- GPTQ: qweight [K/8, N] packed along K in order; qzeros [G, N/8] along N in order;
  scales [G, N]; g_idx [K].
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
# Position, inside a word, of output column 8c + j.
AWQ_POSITION = tuple(AWQ_ORDER.index(j) for j in range(8))
_SHIFTS = torch.arange(0, 32, 4, dtype=torch.int32)


def unpack_int32_cols(packed: torch.Tensor, awq_order: bool = False) -> torch.Tensor:
    """int32 [R, C] -> int values uint8 [R, 8C], eight columns per word."""
    vals = (packed.to(torch.int32).unsqueeze(-1) >> _SHIFTS.to(packed.device)) & 0xF  # [R, C, 8] by position
    if awq_order:
        vals = vals[..., list(AWQ_POSITION)]
    return vals.reshape(packed.shape[0], -1).to(torch.uint8)


def unpack_int32_rows(packed: torch.Tensor) -> torch.Tensor:
    """int32 [R, C] -> uint8 [8R, C], eight rows per word."""
    vals = (packed.to(torch.int32).unsqueeze(1) >> _SHIFTS.to(packed.device).view(1, 8, 1)) & 0xF
    return vals.reshape(-1, packed.shape[1]).to(torch.uint8)


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """uint8 values 0..15 [N, K] -> our qweight [N, ceil(K/2)]."""
    q = F.pad(q.to(torch.uint8), (0, q.shape[1] % 2))
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Our qweight [N, ceil(K/2)] -> uint8 [N, K]."""
    both = torch.stack((packed & 0xF, packed >> 4), dim=-1)
    return both.reshape(packed.shape[0], -1)[:, :k]


def dequantize_int4(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor,
                    k: int) -> torch.Tensor:
    """float32 [N, K] weight from our layout."""
    groups = g_idx.long()
    q = unpack_nibbles(qweight, k).float()
    return (q - zeros.float()[:, groups]) * scales.float()[:, groups]


def int4_linear_twin(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                     g_idx: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """x @ dequantized weight^T (+ bias): the matmul in x's dtype on the dequantized weight."""
    weight = dequantize_int4(qweight, scales, zeros, g_idx, g_idx.shape[0]).to(x.dtype)
    return F.linear(x, weight, bias)


# (k per group as the kernel walks it, first group column, group column step) of a layer whose
# group of input k (local to this rank) is first + (k // k_per_group) * step.
GemvLayout = Tuple[int, int, int]


def gemv_layout(g_idx: torch.Tensor, group_size: int) -> Optional[GemvLayout]:
    """The GEMV's view of `g_idx` when groups follow the inputs in order (host check: call at
    load time), else None. Per-channel scales (group_size -1, one group) walk in 256-input chunks."""
    k = g_idx.numel()
    if k == 0:
        return None
    ks = torch.arange(k, device=g_idx.device)
    first = int(g_idx[0])
    if group_size == -1:
        return (256, first, 0) if bool((g_idx == first).all()) else None
    if group_size < 2 or group_size & (group_size - 1):
        return None
    return (group_size, first, 1) if torch.equal(g_idx.long(), first + ks // group_size) else None
