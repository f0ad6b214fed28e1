"""Vision-encoder outputs by content hash, least recently used out first.

A repeated image (the same picture in many requests, or the next chunk of a prefill that cut
through an image) is encoded once. The cache lives with the model in the scheduler process.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Dict, List, Optional

import torch

DEFAULT_CAPACITY_BYTES = 512 << 20


class EncoderCache:
    def __init__(self, capacity_bytes: int = DEFAULT_CAPACITY_BYTES):
        self.capacity_bytes = capacity_bytes
        self._entries: "OrderedDict[int, torch.Tensor]" = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: int) -> Optional[torch.Tensor]:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: int, value: torch.Tensor) -> None:
        if key in self._entries:
            self._bytes -= _size(self._entries.pop(key))
        self._entries[key] = value
        self._bytes += _size(value)
        while self._bytes > self.capacity_bytes and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._bytes -= _size(old)

    def get_or_compute(self, keys: List[int], compute: Callable[[List[int]], List[torch.Tensor]]
                       ) -> Dict[int, torch.Tensor]:
        """Values for `keys` (distinct); the missing ones come from one `compute(missing_indices)`
        call, so a batch's new images are encoded together."""
        found: Dict[int, torch.Tensor] = {}
        missing: List[int] = []
        for i, key in enumerate(keys):
            value = self.get(key)
            if value is None:
                missing.append(i)
            else:
                found[key] = value
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            for i, value in zip(missing, compute(missing)):
                found[keys[i]] = value
                self.put(keys[i], value)
        return found

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


def encoder_cache_stats(cache: Optional[EncoderCache]) -> Dict[str, int]:
    """The server-state fields of a vision-language model's cache (none for text-only models)."""
    if cache is None:
        return {}
    return {"encoder_cache_items": len(cache), "encoder_cache_bytes": cache.nbytes,
            "encoder_cache_hits": cache.hits, "encoder_cache_misses": cache.misses}


def _size(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
