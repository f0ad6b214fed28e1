"""The model transform: each targeted linear module is wrapped so it adds its batch rows' LoRA
products, y = base(x) + (x A_slot^T) B_slot^T (scaling folded into B), computed segment by
segment over rows sharing a slot (shrink, then expand). Model files are untouched.

The wrappers share one `LoraBatchContext` owned by the LoRA manager; the manager fills it before
each forward pass with the batch's segments (None: no row uses an adapter, base path only). A
captured CUDA graph keeps a `LoraBatch` of static buffers there, refilled before each replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from sglang.kernels import use_triton
from sglang.runtime.lora.pool import LoraSlotPool
from sglang.runtime.lora.targets import LoraTarget


@dataclass
class LoraBatch:
    seg: torch.Tensor  # int64 [3, num_segments] on the model's device: start, length, slot
    rows: torch.Tensor  # int64 [R]: the token rows of every segment, in segment order
    max_len: int  # bound on every segment's length (the kernels' row-block count)


class LoraBatchContext:
    def __init__(self) -> None:
        self.batch: Optional[LoraBatch] = None


def plan_segments(slots: List[int], counts: List[int]) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Group the token rows of a batch by adapter slot. Request i has counts[i] consecutive rows
    using slot slots[i]; rows of slot 0 (base model) are left out. Returns host tensors
    (seg [3, num_segments]: start in segment order, length, slot; rows [R]) and the longest
    segment. Grouping lets the kernels reuse each adapter's weights across all its rows, however
    the batch interleaves adapters."""
    token_slots = torch.repeat_interleave(torch.tensor(slots, dtype=torch.int64), torch.tensor(counts))
    rows = torch.nonzero(token_slots).flatten()
    ordered = torch.sort(token_slots[rows], stable=True)
    rows = rows[ordered.indices]
    seg_slots, lengths = torch.unique_consecutive(ordered.values, return_counts=True)
    starts = torch.cumsum(lengths, 0) - lengths
    max_len = int(lengths.max()) if lengths.numel() else 0
    return torch.stack([starts, lengths, seg_slots]), rows, max_len


def segmented_lora(x: torch.Tensor, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, batch: LoraBatch) -> None:
    """out += per-segment (x A^T) B^T, in place; Triton on CUDA, the torch twin elsewhere."""
    if use_triton(x):
        from sglang.kernels.lora_expand import lora_expand
        from sglang.kernels.lora_shrink import lora_shrink
    else:
        from sglang.kernels.ref.lora import lora_expand, lora_shrink
    h = lora_shrink(x, a, batch.seg, batch.rows, batch.max_len)
    lora_expand(h, b, out, batch.seg, batch.rows, batch.max_len)


class LoraLinear(nn.Module):
    # Not a plain linear: the CPU decode-step planner, which binds layers by their quant method,
    # leaves models with adapters on the module path.
    quant_method = None

    def __init__(self, base: nn.Module, a: torch.Tensor, b: torch.Tensor, ctx: LoraBatchContext):
        super().__init__()
        self.base = base
        self.lora_a, self.lora_b = a, b  # plain attributes: not weights of the checkpoint
        self.ctx = ctx

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # q_size, tp_size, ...: the wrapped layer's
            return getattr(self._modules["base"], name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        batch = self.ctx.batch
        if batch is None:
            return out
        x2 = x.reshape(-1, x.shape[-1])
        segmented_lora(x2, out.view(-1, out.shape[-1]), self.lora_a, self.lora_b, batch)
        return out


def wrap_targets(model: nn.Module, targets: Dict[str, LoraTarget], pool: LoraSlotPool,
                 ctx: LoraBatchContext) -> None:
    for name, target in targets.items():
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, LoraLinear(target.module, pool.a[name], pool.b[name], ctx))
