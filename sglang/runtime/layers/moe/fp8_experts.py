"""Block-wise FP8 experts (DeepSeek-V3, Qwen3-MoE-FP8 checkpoints), dequantized at load.

Such checkpoints store each expert's gate / up / down projection as float8_e4m3fn with a
`weight_scale_inv` grid of one scale per [bn, bk] tile. The experts kernel computes in the model
dtype, so the experts are staged in FP8 while the checkpoint streams in (weights and scales come
in any order), then dequantized once every tensor is in: the same weights the checkpoint
describes, at the model dtype's memory cost. The staging parameters

    w13_weight            float8 [E, 2 * I_rank, H]
    w13_weight_scale_inv  float32 [E, 2 * ceil(I_rank / bn), ceil(H / bk)]  gate grid rows, then up
    w2_weight             float8 [E, H, I_rank]
    w2_weight_scale_inv   float32 [E, ceil(H / bn), ceil(I_rank / bk)]

take the checkpoint's names through the experts' stacked mapping (`.experts.{e}.gate_proj.weight`
is a prefix of `...weight_scale_inv`), so no model file changes. Under tensor parallelism a rank's
slice of the intermediate dim must start on a block boundary.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from sglang.runtime.distributed.lazy_weight import WeightLike, materialize, reads_slices
from sglang.runtime.layers.linear import check_full_shape

FP8 = torch.float8_e4m3fn


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def stage_fp8_block_experts(moe: nn.Module, block: Tuple[int, int]) -> None:
    """Swap `moe`'s expert parameters for FP8 staging ones (before the weights load)."""
    bn, bk = block
    e, h, i_rank = moe.num_experts, moe.hidden_size, moe.intermediate_per_rank
    if moe.tp.size > 1 and (i_rank % bn or i_rank % bk):
        raise ValueError(f"FP8 expert blocks of {block} do not divide the {i_rank} intermediate features per "
                         f"rank at --tp-size {moe.tp.size}; choose a --tp-size whose slice is a multiple of the block")
    moe.fp8_block, moe.fp8_target_dtype = block, moe.w13_weight.dtype
    shapes = {"w13_weight": ((e, 2 * i_rank, h), FP8), "w2_weight": ((e, h, i_rank), FP8),
              "w13_weight_scale_inv": ((e, 2 * _cdiv(i_rank, bn), _cdiv(h, bk)), torch.float32),
              "w2_weight_scale_inv": ((e, _cdiv(h, bn), _cdiv(i_rank, bk)), torch.float32)}
    device = moe.w13_weight.device
    for name, (shape, dtype) in shapes.items():
        param = nn.Parameter(torch.zeros(shape, dtype=dtype, device=device), requires_grad=False)
        param.weight_loader = moe.weight_loader if dtype == FP8 else _scale_loader(moe)
        setattr(moe, name, param)


def _scale_loader(moe: nn.Module):
    @reads_slices
    def load(param: nn.Parameter, loaded: WeightLike, shard_id: Tuple[int, str]) -> None:
        expert, slot = shard_id
        bn, bk = moe.fp8_block
        full_i, h, i_rank = moe.intermediate_size, moe.hidden_size, moe.intermediate_per_rank
        start = moe.tp.rank * i_rank
        if slot == "w2":  # [H, I] weight: the grid's columns follow the sliced inputs
            check_full_shape(loaded, (_cdiv(h, bn), _cdiv(full_i, bk)), f"expert {expert} down scale grid")
            src, dst = loaded.narrow(1, start // bk, param.shape[2]), param.data[expert]
        else:  # gate / up [I, H]: the grid's rows follow the sliced outputs
            check_full_shape(loaded, (_cdiv(full_i, bn), _cdiv(h, bk)), f"expert {expert} {slot} scale grid")
            rows = param.shape[1] // 2
            offset = 0 if slot == "w1" else rows
            src, dst = loaded.narrow(0, start // bn, rows), param.data[expert, offset:offset + rows]
        with torch.no_grad():
            dst.copy_(materialize(src).float())
    return load


def _expand(scale: torch.Tensor, bn: int, bk: int, rows: int, cols: int) -> torch.Tensor:
    """[E, R, C] grid -> one scale per element [E, rows, cols]."""
    return scale.repeat_interleave(bn, dim=1)[:, :rows].repeat_interleave(bk, dim=2)[:, :, :cols]


@torch.no_grad()
def dequantize_staged_experts(moe: nn.Module) -> None:
    """Replace the FP8 staging parameters with experts in the model dtype (after every tensor loaded)."""
    bn, bk = moe.fp8_block
    i_rank, h = moe.intermediate_per_rank, moe.hidden_size
    grid_rows = _cdiv(i_rank, bn)
    s13 = moe.w13_weight_scale_inv
    gate = _expand(s13[:, :grid_rows], bn, bk, i_rank, h)
    up = _expand(s13[:, grid_rows:], bn, bk, i_rank, h)
    w13 = moe.w13_weight.float() * torch.cat([gate, up], dim=1)
    w2 = moe.w2_weight.float() * _expand(moe.w2_weight_scale_inv, bn, bk, h, i_rank)
    for name, value in (("w13_weight", w13), ("w2_weight", w2)):
        param = nn.Parameter(value.to(moe.fp8_target_dtype), requires_grad=False)
        param.weight_loader = moe.weight_loader
        setattr(moe, name, param)
    del moe.w13_weight_scale_inv, moe.w2_weight_scale_inv
    moe.fp8_block = None
