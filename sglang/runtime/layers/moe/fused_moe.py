"""All experts of one mixture-of-experts layer, their weights stacked [E, ...].

Checkpoints store each expert's gate / up / down projection as its own tensor
(`experts.{e}.gate_proj.weight`, or Mixtral's `w1` / `w3` / `w2`); `expert_weight_mapping`
routes them into the stacked parameters with shard id (e, "w1" | "w3" | "w2"):

    w13_weight [E, 2 * I_rank, H]   rows [0, I_rank) gate (w1), [I_rank, 2 I_rank) up (w3)
    w2_weight  [E, H, I_rank]       down

Under tensor parallelism every rank holds every expert, each with its slice of the intermediate
dim (I_rank = I / tp_size), like a column-parallel gate|up and a row-parallel down: the layer's
output on a rank is a partial sum that is all-reduced. The group comes from the
`tensor_parallel` scope the model is built in (`runtime/distributed/`), as for linear layers.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from sglang.runtime.distributed.lazy_weight import WeightLike, materialize, reads_slices
from sglang.runtime.distributed.tensor_parallel import resolve_tensor_parallel
from sglang.runtime.layers.activation import get_gated_activation
from sglang.runtime.layers.linear import check_full_shape
from sglang.runtime.layers.moe.experts_torch import fused_experts_dense, fused_experts_torch

EXPERT_SLOTS = ("w1", "w2", "w3")  # gate, down, up (Mixtral's names)
FP8_DTYPES = tuple(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name))


def expert_weight_mapping(num_experts: int, gate: str = "gate_proj", down: str = "down_proj",
                          up: str = "up_proj") -> List[Tuple[str, str, Tuple[int, str]]]:
    """(parameter part, checkpoint part, shard id) for every expert's three tensors, in the
    `StackedMapping` shape `load_named_weights` routes with."""
    mapping = []
    for e in range(num_experts):
        for ckpt_name, slot in ((gate, "w1"), (down, "w2"), (up, "w3")):
            param = ".experts.w2_weight" if slot == "w2" else ".experts.w13_weight"
            mapping.append((param, f".experts.{e}.{ckpt_name}.weight", (e, slot)))
    return mapping


class FusedMoE(nn.Module):
    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, hidden_act: str = "silu",
                 tp_rank: Optional[int] = None, tp_size: Optional[int] = None,
                 params_dtype: Optional[torch.dtype] = None):
        super().__init__()
        self.tp = resolve_tensor_parallel(tp_rank, tp_size)
        if intermediate_size % self.tp.size:
            raise ValueError(f"moe_intermediate_size={intermediate_size} is not divisible by "
                             f"tp_size={self.tp.size}; choose another --tp-size")
        self.num_experts, self.hidden_size = num_experts, hidden_size
        self.intermediate_size = intermediate_size
        self.intermediate_per_rank = intermediate_size // self.tp.size
        dtype = params_dtype or torch.get_default_dtype()
        shard = self.intermediate_per_rank
        self.w13_weight = nn.Parameter(torch.empty(num_experts, 2 * shard, hidden_size, dtype=dtype),
                                       requires_grad=False)
        self.w2_weight = nn.Parameter(torch.empty(num_experts, hidden_size, shard, dtype=dtype),
                                      requires_grad=False)
        for param in (self.w13_weight, self.w2_weight):
            param.weight_loader = self.weight_loader
        self.hidden_act = hidden_act
        self.act_fn = get_gated_activation(hidden_act)

    @reads_slices
    def weight_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: Tuple[int, str]) -> None:
        """Copy this rank's slice of expert `e`'s `slot` tensor (shard_id = (e, slot))."""
        if not (isinstance(shard_id, tuple) and len(shard_id) == 2 and shard_id[1] in EXPERT_SLOTS
                and 0 <= shard_id[0] < self.num_experts):
            raise ValueError(f"expert shard id must be (expert < {self.num_experts}, one of "
                             f"{EXPERT_SLOTS}), got {shard_id!r}")
        expert, slot = shard_id
        full, rows = self.intermediate_size, self.intermediate_per_rank
        start = self.tp.rank * rows
        if slot == "w2":
            check_full_shape(loaded, (self.hidden_size, full), f"expert {expert} down projection")
            src, dst = loaded.narrow(1, start, rows), param.data[expert]
        else:
            check_full_shape(loaded, (full, self.hidden_size), f"expert {expert} {slot} projection")
            offset = 0 if slot == "w1" else rows
            src, dst = loaded.narrow(0, start, rows), param.data[expert, offset:offset + rows]
        src = materialize(src)
        if src.dtype in FP8_DTYPES and param.dtype not in FP8_DTYPES:  # a plain copy would drop the scales
            raise ValueError(f"expert {expert} {slot} is stored as {src.dtype}; FP8 experts are read from "
                             f"checkpoints with block-wise scales (quant_method fp8, weight_block_size) only: "
                             f"use such a checkpoint or a bfloat16 one")
        with torch.no_grad():
            dst.copy_(src)

    def partial_output(self, x: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor) -> torch.Tensor:
        """This rank's share of the experts' weighted sum (before the all-reduce). On CUDA with a
        SiLU gate: the Triton grouped GEMMs (no host reads, so CUDA graphs capture them); other
        CUDA activations: the dense form while capturing (every expert on every token), else the twin."""
        if x.is_cuda and self.hidden_act == "silu":
            from sglang.kernels.fused_moe import fused_experts  # Triton: imported only on CUDA

            return fused_experts(x, self.w13_weight, self.w2_weight, topk_weights, topk_ids)
        if x.is_cuda and torch.cuda.is_current_stream_capturing():
            return fused_experts_dense(x, self.w13_weight, self.w2_weight, topk_weights, topk_ids, self.act_fn)
        return fused_experts_torch(x, self.w13_weight, self.w2_weight, topk_weights, topk_ids, self.act_fn)

    def forward(self, x: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor) -> torch.Tensor:
        return self.tp.all_reduce(self.partial_output(x, topk_weights, topk_ids))

    def extra_repr(self) -> str:
        return (f"experts={self.num_experts}, hidden={self.hidden_size}, "
                f"intermediate={self.intermediate_size}, tp={self.tp.rank}/{self.tp.size}")
