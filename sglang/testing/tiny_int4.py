"""INT4 checkpoint writers for `tiny_quantized.write_quantized` (AWQ GEMM and GPTQ layouts).

Round-to-nearest per group of `group_size` inputs (what a calibration-free quantizer does; AWQ's
and GPTQ's searches only choose other values in the same layout). Packing is written out word
by word from the formats' descriptions, independently of the loader's vectorised unpacking.

Options: `group_size` (32/64/128; GPTQ also -1), `sym` (GPTQ: zero point 8), `act_order`
(GPTQ: a seeded permutation of the inputs decides the groups, saved as g_idx), `gptq_format`
("gptq": zeros stored minus one, or "gptq_v2").
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Callable, Dict, Tuple

import torch

Tensors = Dict[str, torch.Tensor]
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # word value i holds column 8c + AWQ_ORDER[i]


def _word(values) -> int:
    """Eight 4-bit values -> one signed int32, value i at bits 4i."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & 0xF) << (4 * i)
    return word - (1 << 32) if word >= 1 << 31 else word


def pack_along_cols(q: torch.Tensor, order=tuple(range(8))) -> torch.Tensor:
    rows, cols = q.shape
    values = q.tolist()
    words = [[_word(row[8 * c + order[i]] for i in range(8)) for c in range(cols // 8)] for row in values]
    return torch.tensor(words, dtype=torch.int32).reshape(rows, cols // 8)


def pack_along_rows(q: torch.Tensor) -> torch.Tensor:
    rows, cols = q.shape
    padded = torch.cat([q, q.new_zeros(-rows % 8, cols)])
    return pack_along_cols(padded.t().contiguous()).t().contiguous()


def rtn_groups(w: torch.Tensor, g_idx: torch.Tensor, groups: int, sym: bool
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w [N, K] -> (q [K, N] 0..15, scales [G, N], zeros [G, N]) with per-(group, output) RTN."""
    n, k = w.shape
    scales, zeros = torch.empty(groups, n), torch.empty(groups, n, dtype=torch.int64)
    for g in range(groups):
        cols = w[:, g_idx == g]
        lo, hi = cols.min(dim=1).values.clamp(max=0), cols.max(dim=1).values.clamp(min=0)
        if sym:
            scales[g] = (torch.maximum(hi, -lo) / 7.5).clamp(min=1e-8)  # [-8, 7.5] * s covers the range
            zeros[g] = 8
        else:
            scales[g] = ((hi - lo) / 15).clamp(min=1e-8)
            zeros[g] = torch.round(-lo / scales[g]).clamp(0, 15).long()
    scales = scales.half().float()  # checkpoints store float16 scales
    s, z = scales[g_idx.long()].t(), zeros[g_idx.long()].t()  # [N, K]
    q = torch.clamp(torch.round(w / s) + z, 0, 15).long()
    return q.t().contiguous(), scales, zeros


def _dequantized(q: torch.Tensor, scales, zeros, g_idx) -> torch.Tensor:
    g = g_idx.long()
    return ((q.float() - zeros[g].float()) * scales[g]).t().contiguous()  # [N, K]


def int4_writer_and_config(fmt: str, options: Dict[str, Any]) -> Tuple[Callable, Dict[str, Any]]:
    if fmt not in ("awq", "gptq"):
        raise ValueError(f"unknown quantized format {fmt!r}")
    group = int(options.get("group_size", 128))
    sym = bool(options.get("sym", fmt == "gptq"))
    act_order = bool(options.get("act_order", False))
    v1 = options.get("gptq_format", "gptq") == "gptq"
    seed = int(options.get("seed", 0))

    def write(name: str, w: torch.Tensor, out: Tensors) -> torch.Tensor:
        base = name[: -len(".weight")]
        n, k = w.shape
        groups = 1 if group == -1 else -(-k // group)
        g_idx = torch.arange(k) // (k if group == -1 else group)
        if act_order:  # GPTQ orders inputs by their statistics, so layers reading one input share it
            shared_input = re.sub(r"\.(gate|up)_proj$", ".mlp_in", re.sub(r"\.[qkv]_proj$", ".attn_in", base))
            gen = torch.Generator().manual_seed(seed + zlib.crc32(shared_input.encode()))
            perm = torch.randperm(k, generator=gen)
            g_idx = torch.empty(k, dtype=torch.int64)
            g_idx[perm] = torch.arange(k) // (k if group == -1 else group)
        q, scales, zeros = rtn_groups(w, g_idx, groups, sym)
        out[base + ".scales"] = scales.half()
        if fmt == "awq":
            out[base + ".qweight"] = pack_along_cols(q, AWQ_ORDER)
            out[base + ".qzeros"] = pack_along_cols(zeros, AWQ_ORDER)
        else:
            out[base + ".qweight"] = pack_along_rows(q)
            out[base + ".qzeros"] = pack_along_cols(zeros - 1 if v1 else zeros)  # v1 keeps zero - 1
            out[base + ".g_idx"] = g_idx.to(torch.int32)
        return _dequantized(q, scales, zeros, g_idx)

    if fmt == "awq":
        return write, {"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True, "version": "gemm"}
    return write, {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": act_order, "sym": sym,
                   "static_groups": False, "checkpoint_format": "gptq" if v1 else "gptq_v2"}
