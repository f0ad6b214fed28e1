"""KV memory at token granularity (page size 1).

Three pieces, as in docs/architecture.md:
- ReqToTokenPool: int32 table [max_requests, context_len] mapping (request slot, position) -> KV slot.
- TokenSlotAllocator: a free list over KV slots 1..size (slot 0 is reserved as the write target
  for padded tokens, e.g. CUDA-graph padding, and is never handed out).
- KVPool: per-layer K and V tensors [size + 1, kv_heads, head_dim]; with an FP8 dtype they hold
  value / scale in one byte (`kv_quant.py`), and readers dequantize with `read_kv`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

import torch

from sglang.runtime.host_device import host_to_device
from sglang.runtime.mem_cache.kv_quant import dequantize_kv, is_fp8, quantize_kv


class ReqToTokenPool:
    def __init__(self, size: int, max_context_len: int, device: str):
        self.size = size
        self.max_context_len = max_context_len
        self.device = device
        self.req_to_token = torch.zeros((size, max_context_len), dtype=torch.int32, device=device)
        # A host mirror of the table: the scheduler reads rows back (to cache or free a request's
        # KV) without a device sync, which would stall overlap scheduling. On CPU it is the table.
        on_cpu = torch.device(device).type == "cpu"
        self.host_table = self.req_to_token if on_cpu else torch.zeros((size, max_context_len), dtype=torch.int32)
        self._free: List[int] = list(range(size))

    def available_size(self) -> int:
        return len(self._free)

    def alloc(self, n: int = 1) -> Optional[List[int]]:
        if n > len(self._free):
            return None
        out, self._free = self._free[:n], self._free[n:]
        return out

    def free(self, indices: Union[int, List[int]]) -> None:
        if isinstance(indices, int):
            indices = [indices]
        self._free.extend(indices)

    def write(self, req_idx: int, start: int, end: int, slots: torch.Tensor) -> None:
        host = slots.to(device="cpu", dtype=torch.int32)
        self.host_table[req_idx, start:end] = host
        if self.host_table is not self.req_to_token:
            self.req_to_token[req_idx, start:end] = host_to_device(host, self.device)

    def write_points(self, rows: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                     device_args: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None) -> None:
        """table[rows[i], positions[i]] = slots[i] for host tensors; `device_args` are the same
        three already on the device (saves a copy), used for the device table."""
        self.host_table[rows, positions] = slots.to(torch.int32)
        if self.host_table is self.req_to_token:
            return
        if device_args is None:
            device_args = tuple(host_to_device(t, self.device) for t in (rows, positions, slots))
        d_rows, d_pos, d_slots = device_args
        self.req_to_token[d_rows, d_pos] = d_slots.to(torch.int32)

    def copy_prefix(self, dst_rows: List[int], src_rows: List[int], lengths: List[int]) -> None:
        """table[dst, :n] = table[src, :n] for each (dst, src, n): a row that shares another's
        first n positions (EAGLE's tree branches)."""
        if not dst_rows:
            return
        width = max(lengths)
        for dst, src, n in zip(dst_rows, src_rows, lengths):
            self.host_table[dst, :n] = self.host_table[src, :n]
        if self.host_table is self.req_to_token or width == 0:
            return
        # On the device: one gather and one scatter for all rows (columns past a row's n keep
        # their values), not a copy launch per row.
        dst_t, src_t, n_t = (host_to_device(torch.tensor(v, dtype=torch.int64), self.device)
                             for v in (dst_rows, src_rows, lengths))
        cols = torch.arange(width, device=self.req_to_token.device)
        old = self.req_to_token[dst_t, :width]
        self.req_to_token[dst_t, :width] = torch.where(cols[None, :] < n_t[:, None], self.req_to_token[src_t, :width], old)

    def read(self, req_idx: int, start: int, end: int) -> torch.Tensor:
        """Slots at positions [start, end) of a row, as a fresh int64 host tensor (no device sync)."""
        return self.host_table[req_idx, start:end].to(torch.int64)

    def clear(self) -> None:
        self._free = list(range(self.size))


_MERGE_EVERY = 64  # pending frees merged into the free list in one cat, not one per free


class TokenSlotAllocator:
    """Free list of KV slots. Frees are batched and merged lazily so that the hot path is cheap."""

    def __init__(self, size: int, device: str):
        self.size = size
        self.device = device
        self.clear()

    def clear(self) -> None:
        # Slots live on the CPU: allocation happens in scheduler bookkeeping, not on the device.
        self._free_slots = torch.arange(1, self.size + 1, dtype=torch.int64)
        self._pending: List[torch.Tensor] = []
        self._pending_count = 0  # kept so available_size() is O(1): the scheduler asks every step

    def _merge(self) -> None:
        if self._pending:
            self._free_slots = torch.cat([self._free_slots, *self._pending])
            self._pending = []
            self._pending_count = 0

    def available_size(self) -> int:
        return int(self._free_slots.numel()) + self._pending_count

    def alloc(self, n: int) -> Optional[torch.Tensor]:
        if n > self._free_slots.numel():
            self._merge()
            if n > self._free_slots.numel():
                return None
        out, self._free_slots = self._free_slots[:n], self._free_slots[n:]
        return out

    def free(self, slots: torch.Tensor) -> None:
        if slots.numel() == 0:
            return
        slots = slots.to(device="cpu", dtype=torch.int64)
        assert int(slots.min()) >= 1, "slot 0 is reserved and must never be freed"
        self._pending.append(slots)
        self._pending_count += int(slots.numel())
        if len(self._pending) >= _MERGE_EVERY:
            self._merge()


class KVPool:
    """Per-layer K/V storage indexed by slot. Attention backends write and read through it."""

    def __init__(
        self,
        size: int,
        dtype: torch.dtype,
        num_kv_heads: int,
        head_dim: int,
        num_layers: int,
        device: str,
        v_head_dim: Optional[int] = None,
    ):
        self.size = size
        self.dtype = dtype
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.v_head_dim = v_head_dim or head_dim
        self.num_layers = num_layers
        self.device = device
        shape_k = (size + 1, num_kv_heads, head_dim)
        shape_v = (size + 1, num_kv_heads, self.v_head_dim)
        self.k_buffer = [torch.zeros(shape_k, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v_buffer = [torch.zeros(shape_v, dtype=dtype, device=device) for _ in range(num_layers)]
        self.is_fp8 = is_fp8(dtype)
        # Per-layer FP8 scales (stored value = value / scale); 1.0 unless calibrated ones are set.
        self.k_scale = [1.0] * num_layers
        self.v_scale = [1.0] * num_layers

    @staticmethod
    def bytes_per_token(num_kv_heads: int, head_dim: int, num_layers: int, dtype: torch.dtype) -> int:
        return 2 * num_kv_heads * head_dim * num_layers * torch.tensor([], dtype=dtype).element_size()

    def get_key_buffer(self, layer_id: int) -> torch.Tensor:
        return self.k_buffer[layer_id]

    def get_value_buffer(self, layer_id: int) -> torch.Tensor:
        return self.v_buffer[layer_id]

    def set_kv_scales(self, layer_id: int, k_scale: float, v_scale: float) -> None:
        if not (k_scale > 0 and v_scale > 0):
            raise ValueError(f"KV cache scales must be positive, got k_scale={k_scale}, v_scale={v_scale}")
        self.k_scale[layer_id], self.v_scale[layer_id] = float(k_scale), float(v_scale)

    def read_kv(self, layer_id: int, k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Values read from this layer's buffers (any gather of them) -> `dtype` (FP8 dequantized)."""
        return (dequantize_kv(k, self.k_scale[layer_id], dtype), dequantize_kv(v, self.v_scale[layer_id], dtype))

    def set_kv_buffer(self, layer_id: int, loc: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        if self.is_fp8:
            k = quantize_kv(k, self.k_scale[layer_id], self.dtype)
            v = quantize_kv(v, self.v_scale[layer_id], self.dtype)
        elif k.dtype != self.dtype:
            k, v = k.to(self.dtype), v.to(self.dtype)
        self.k_buffer[layer_id][loc] = k.view(-1, self.num_kv_heads, self.head_dim)
        self.v_buffer[layer_id][loc] = v.view(-1, self.num_kv_heads, self.v_head_dim)

    def copy_slots(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        """Copy KV of slots `src` into slots `dst` in every layer (used for KV concatenation)."""
        for layer in range(self.num_layers):
            self.k_buffer[layer][dst] = self.k_buffer[layer][src]
            self.v_buffer[layer][dst] = self.v_buffer[layer][src]
