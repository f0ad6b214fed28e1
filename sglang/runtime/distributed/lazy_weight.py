"""Checkpoint tensors read lazily, so a tensor-parallel rank reads only its slice.

`LazyWeight` wraps a safetensors slice handle (`safe_open(...).get_slice(name)`): it has the
tensor's `shape`, `narrow(dim, start, length)` and `[a:b]` return narrower lazy views,
and only `materialize()` reads bytes from the file, just those of the view. Parallel layers'
weight loaders take these; every other loader gets `materialize(x)` (the whole view as a tensor).
"""

from __future__ import annotations

from typing import Any, List, Tuple, Union

import torch


class LazyWeight:
    def __init__(self, handle: Any, bounds: List[Tuple[int, int]]):
        self._handle = handle  # keeps its file open while the view lives
        self._bounds = bounds  # per dim: [start, stop) in the stored tensor

    @classmethod
    def from_safetensors(cls, handle: Any) -> "LazyWeight":
        shape = handle.get_shape()
        if not shape:
            raise ValueError("a 0-dim checkpoint tensor is read whole, not as a LazyWeight")
        return cls(handle, [(0, n) for n in shape])

    @property
    def shape(self) -> torch.Size:
        return torch.Size(stop - start for start, stop in self._bounds)

    def dim(self) -> int:
        return len(self._bounds)

    def numel(self) -> int:
        return self.shape.numel()

    def narrow(self, dim: int, start: int, length: int) -> "LazyWeight":
        dim = dim % self.dim()
        lo, hi = self._bounds[dim]
        if start < 0 or length < 0 or lo + start + length > hi:
            raise ValueError(f"narrow({dim}, {start}, {length}) is outside a checkpoint tensor of shape "
                             f"{tuple(self.shape)}")
        bounds = list(self._bounds)
        bounds[dim] = (lo + start, lo + start + length)
        return LazyWeight(self._handle, bounds)

    def __getitem__(self, index: slice) -> "LazyWeight":
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("LazyWeight supports contiguous [a:b] slices of dim 0 only")
        start, stop, _ = index.indices(self.shape[0])
        return self.narrow(0, start, max(stop - start, 0))

    def materialize(self) -> torch.Tensor:
        """Read this view's bytes (and only those) into a tensor."""
        return self._handle[tuple(slice(a, b) for a, b in self._bounds)]

    def __repr__(self) -> str:
        return f"LazyWeight(shape={tuple(self.shape)})"


WeightLike = Union[torch.Tensor, LazyWeight]


def materialize(x: WeightLike) -> torch.Tensor:
    return x.materialize() if isinstance(x, LazyWeight) else x


def reads_slices(loader):
    """Mark a weight loader that accepts `LazyWeight` (it narrows, then materializes only its slice);
    `load_named_weights` materializes whole tensors for every other loader."""
    loader.reads_slices = True
    return loader
