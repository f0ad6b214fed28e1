"""The model transform: each targeted linear module is wrapped so it adds its batch rows' LoRA
products, y = base(x) + (x A_slot^T) B_slot^T (scaling folded into B), computed segment by
segment over rows sharing a slot (shrink, then expand). Model files are untouched.

The wrappers share one `LoraBatchContext` owned by the LoRA manager; the manager fills it before
each forward pass with the batch's segments (None: no row uses an adapter, base path only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import nn

from sglang.kernels import use_triton
from sglang.runtime.lora.pool import LoraSlotPool
from sglang.runtime.lora.targets import LoraTarget


@dataclass
class LoraBatch:
    seg: torch.Tensor  # int64 [3, num_segments] on the model's device: first row, length, slot
    max_len: int


class LoraBatchContext:
    def __init__(self) -> None:
        self.batch: Optional[LoraBatch] = None


def build_segments(slots: List[int], counts: List[int]) -> tuple:
    """Runs of consecutive rows with one slot: ([starts], [lengths], [slots]) and the longest run."""
    starts: List[int] = []
    lengths: List[int] = []
    seg_slots: List[int] = []
    row = 0
    for slot, n in zip(slots, counts):
        if n > 0 and seg_slots and seg_slots[-1] == slot and starts[-1] + lengths[-1] == row:
            lengths[-1] += n
        elif n > 0:
            starts.append(row)
            lengths.append(n)
            seg_slots.append(slot)
        row += n
    max_len = max((n for n, s in zip(lengths, seg_slots) if s != 0), default=0)
    return (starts, lengths, seg_slots), max_len


def segmented_lora(x: torch.Tensor, out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, batch: LoraBatch) -> None:
    """out += per-segment (x A^T) B^T, in place; Triton on CUDA, the torch twin elsewhere."""
    if use_triton(x):
        from sglang.kernels.lora_expand import lora_expand
        from sglang.kernels.lora_shrink import lora_shrink
    else:
        from sglang.kernels.ref.lora import lora_expand, lora_shrink
    h = lora_shrink(x, a, batch.seg, batch.max_len)
    lora_expand(h, b, out, batch.seg, batch.max_len)


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
