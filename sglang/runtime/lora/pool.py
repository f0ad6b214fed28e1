"""The device slots adapters are computed from: per target module, A and B of every slot stacked
in one buffer ([slots, stacked rank, in] and [slots, out, stacked rank]) so a kernel gathers a
row's weights by its slot index.

Slot 0 stays all zeros (the base model). Slots 1..max_loras_per_batch hold adapters; a batch's
adapters are put in slots before it runs, evicting the least recently used adapters that the
batch does not use (their weights stay in host memory, so a later batch reloads them by copy).
Ranks below the maximum are zero padded, which leaves the products unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable

import torch

from sglang.runtime.lora.adapter import LoraAdapter
from sglang.runtime.lora.targets import LoraTarget


class LoraSlotPool:
    def __init__(self, targets: Dict[str, LoraTarget], max_loras: int, max_rank: int, device: str,
                 dtype: torch.dtype):
        self.targets = targets
        self.max_rank = max_rank
        self.num_slots = max_loras + 1
        self.a: Dict[str, torch.Tensor] = {}
        self.b: Dict[str, torch.Tensor] = {}
        for name, t in targets.items():
            stacked = len(t.slices) * max_rank
            self.a[name] = torch.zeros(self.num_slots, stacked, t.in_features, dtype=dtype, device=device)
            self.b[name] = torch.zeros(self.num_slots, t.out_features, stacked, dtype=dtype, device=device)
        self.slot_of: "OrderedDict[str, int]" = OrderedDict()  # oldest use first
        self.free = list(range(self.num_slots - 1, 0, -1))
        self.loads = 0  # host -> device copies of adapters (LRU misses), for stats and tests

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for bufs in (self.a, self.b) for t in bufs.values())

    def assign(self, names: Iterable[str], adapters: Dict[str, LoraAdapter]) -> Dict[str, int]:
        """Slots for this batch's adapters, loading the ones not resident."""
        wanted = list(dict.fromkeys(names))
        if len(wanted) > self.num_slots - 1:
            raise RuntimeError(f"a batch uses {len(wanted)} adapters but only {self.num_slots - 1} fit "
                               f"(--max-loras-per-batch); the scheduler should have deferred some")
        out = {}
        for name in wanted:
            if name in self.slot_of:
                self.slot_of.move_to_end(name)
                out[name] = self.slot_of[name]
        for name in wanted:
            if name not in out:
                out[name] = self._load(adapters[name], keep=set(wanted))
        return out

    def drop(self, name: str) -> None:
        slot = self.slot_of.pop(name, None)
        if slot is not None:
            self.free.append(slot)

    def _load(self, adapter: LoraAdapter, keep: set) -> int:
        if not self.free:
            victim = next(n for n in self.slot_of if n not in keep)  # least recently used, unused now
            self.drop(victim)
        slot = self.free.pop()
        self._write(slot, adapter)
        self.slot_of[adapter.name] = slot
        self.loads += 1
        return slot

    def _write(self, slot: int, adapter: LoraAdapter) -> None:
        r, big_r = adapter.rank, self.max_rank
        for name, t in self.targets.items():
            a, b = self.a[name][slot], self.b[name][slot]
            a.zero_()
            b.zero_()
            for i, pair in enumerate(adapter.weights.get(name, [None] * len(t.slices))):
                if pair is None:
                    continue
                off = t.slice_offset(i)
                a[i * big_r:i * big_r + r].copy_(pair[0], non_blocking=True)
                b[off:off + t.out_sizes[i], i * big_r:i * big_r + r].copy_(pair[1], non_blocking=True)
