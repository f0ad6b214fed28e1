"""The LoRA manager (one per model runner): the adapters loaded in host memory, their device slots
and the per-batch segments the wrapped layers read.

Created right after the model loads, before the KV cache is sized, so the slots' device memory
is counted as weights.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

import torch
from torch import nn

from sglang.runtime.host_device import host_to_device
from sglang.runtime.lora.adapter import LoraAdapter, LoraAdapterError, adapter_scaling, load_adapter, read_adapter_config
from sglang.runtime.lora.config import check_adapter_name, parse_lora_paths, parse_target_modules
from sglang.runtime.lora.layers import LoraBatch, LoraBatchContext, plan_segments, wrap_targets
from sglang.runtime.lora.pool import LoraSlotPool
from sglang.runtime.lora.targets import find_targets

logger = logging.getLogger(__name__)
DEFAULT_MAX_RANK = 16


class LoraManager:
    def __init__(self, model: nn.Module, server_args, device: str, dtype: torch.dtype):
        allowed = parse_target_modules(server_args.lora_target_modules)
        self.targets = find_targets(model, allowed)
        if not self.targets:
            raise ValueError(f"--enable-lora: {type(model).__name__} has no linear layers named {list(allowed)}")
        paths = parse_lora_paths(server_args.lora_paths)
        ranks = [adapter_scaling(read_adapter_config(p))[0] for p in paths.values()]
        self.max_rank = server_args.max_lora_rank or max(ranks, default=DEFAULT_MAX_RANK)
        self.dtype = dtype
        self.device = device
        self.pool = LoraSlotPool(self.targets, server_args.max_loras_per_batch, self.max_rank, device, dtype)
        self.ctx = LoraBatchContext()
        wrap_targets(model, self.targets, self.pool, self.ctx)
        self.adapters: Dict[str, LoraAdapter] = {}
        self._graph_segs = self.pool.num_slots - 1  # decode graphs: one segment per adapter slot
        self._graph_buf: Optional[torch.Tensor] = None
        for name, path in paths.items():
            self.load(name, path)
        logger.info("LoRA: %d target modules, %d slots of rank %d (%.1f MiB), adapters %s", len(self.targets),
                    self.pool.num_slots - 1, self.max_rank, self.pool.nbytes() / (1 << 20), sorted(self.adapters))

    def load(self, name: str, path: str) -> LoraAdapter:
        check_adapter_name(name)
        if name in self.adapters:
            raise LoraAdapterError(f"a LoRA adapter named {name!r} is already loaded; unload it first or pick "
                                   f"another name")
        adapter = load_adapter(name, path, self.targets, self.max_rank, self.dtype)
        self.adapters[name] = adapter
        return adapter

    def unload(self, name: str) -> None:
        if name not in self.adapters:
            raise LoraAdapterError(f"no LoRA adapter named {name!r} is loaded; loaded: {sorted(self.adapters)}")
        self.pool.drop(name)
        del self.adapters[name]

    def names(self) -> List[str]:
        return sorted(self.adapters)

    def prepare(self, names: Optional[List[Optional[str]]], counts: List[int]) -> None:
        """Set the segments of the next forward pass: request i uses adapter names[i] (None: the
        base model) over counts[i] consecutive token rows."""
        if names is None or not any(names):
            self.ctx.batch = None
            return
        seg, rows, max_len = plan_segments(self._slots(names), counts)
        packed = host_to_device(torch.cat([seg.flatten(), rows]), self.device)  # one copy
        n = seg.shape[1]
        self.ctx.batch = LoraBatch(packed[:3 * n].view(3, n), packed[3 * n:], max_len)

    def _slots(self, names: List[Optional[str]]) -> List[int]:
        missing = [n for n in names if n is not None and n not in self.adapters]
        if missing:
            raise LoraAdapterError(f"adapters {sorted(set(missing))} are not loaded")
        slot_of = self.pool.assign([n for n in names if n is not None], self.adapters)
        return [0 if n is None else slot_of[n] for n in names]

    # ---------------------------------------------------------------- CUDA graphs
    def graph_batch(self, graph_bs: int, max_bs: int) -> LoraBatch:
        """The static segments a decode graph of `graph_bs` rows is captured with: one segment per
        adapter slot (empty until a replay fills it), rows read from a shared static buffer."""
        if self._graph_buf is None:
            self._graph_buf = torch.zeros(3 * self._graph_segs + max_bs, dtype=torch.int64, device=self.device)
        n = self._graph_segs
        return LoraBatch(self._graph_buf[:3 * n].view(3, n), self._graph_buf[3 * n:3 * n + graph_bs], graph_bs)

    def prepare_graph(self, names: Optional[List[Optional[str]]], bs: int, batch: LoraBatch) -> None:
        """Before replaying a decode graph: fill its static segments with this batch's (rows past
        `bs` are padding and in no segment)."""
        n = self._graph_segs
        host = torch.zeros(3 * n + batch.rows.shape[0], dtype=torch.int64)
        if names is not None and any(names):
            seg, rows, _ = plan_segments(self._slots(names), [1] * bs)
            host[:3 * n].view(3, n)[:, :seg.shape[1]] = seg
            host[3 * n:3 * n + rows.shape[0]] = rows
        self._graph_buf[:host.shape[0]].copy_(host_to_device(host, self.device), non_blocking=True)
        self.ctx.batch = batch

    def clear(self) -> None:
        self.ctx.batch = None
