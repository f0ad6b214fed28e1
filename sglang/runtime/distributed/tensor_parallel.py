"""The tensor-parallel group of this process, and how layers find it without model files passing it.

`TensorParallel` is an immutable value: this process's rank, the group size and the
torch.distributed process group. Its collectives are no-ops at size 1, so single-device code runs
the same layers unchanged. The loader builds a model inside `with tensor_parallel(tp):`; a
ContextVar (not a module global) carries it, so two models built in one process (tests, a draft
model) never see each other's group.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class TensorParallel:
    rank: int = 0
    size: int = 1
    group: Optional[Any] = None  # torch.distributed ProcessGroup; None at size 1 (or shard-only views)

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size:
            raise ValueError(f"tp_rank={self.rank} must be in [0, tp_size={self.size})")

    @property
    def is_first(self) -> bool:
        return self.rank == 0

    def _require_group(self, op: str) -> None:
        if self.group is None:
            raise RuntimeError(
                f"{op} over tp_size={self.size} needs a process group: this layer was built with an "
                f"explicit tp_rank/tp_size (shard-only); build the model inside tensor_parallel(tp) with "
                f"tp from init_tensor_parallel"
            )

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of `x` over ranks (in place when x is contiguous; the result is returned)."""
        if self.size == 1:
            return x
        self._require_group("all_reduce")
        x = x.contiguous()
        dist.all_reduce(x, group=self.group)
        return x

    def all_gather(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Every rank's `x` concatenated along `dim` in rank order, on every rank."""
        if self.size == 1:
            return x
        self._require_group("all_gather")
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x, group=self.group)
        return torch.cat(parts, dim=dim)

    def gather_to_first(self, x: torch.Tensor, dim: int = -1) -> Optional[torch.Tensor]:
        """Ranks' `x` concatenated along `dim` on rank 0; None on the other ranks."""
        if self.size == 1:
            return x
        self._require_group("gather_to_first")
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.size)] if self.is_first else None
        dist.gather(x, parts, dst=dist.get_global_rank(self.group, 0), group=self.group)
        return torch.cat(parts, dim=dim) if parts is not None else None

    def first_ranks_value(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (a picklable object), e.g. a seed each node drew itself."""
        if self.size == 1:
            return value
        self._require_group("first_ranks_value")
        box = [value]
        dist.broadcast_object_list(box, src=dist.get_global_rank(self.group, 0), group=self.group)
        return box[0]


SINGLE_RANK = TensorParallel()

_CURRENT: contextvars.ContextVar[TensorParallel] = contextvars.ContextVar("sglang_tensor_parallel",
                                                                          default=SINGLE_RANK)


def current_tensor_parallel() -> TensorParallel:
    """The group layers constructed now belong to (single rank outside `tensor_parallel`)."""
    return _CURRENT.get()


@contextlib.contextmanager
def tensor_parallel(tp: TensorParallel) -> Iterator[TensorParallel]:
    """Layers constructed inside this block shard for, and communicate over, `tp`."""
    token = _CURRENT.set(tp)
    try:
        yield tp
    finally:
        _CURRENT.reset(token)


def resolve_tensor_parallel(tp_rank: Optional[int], tp_size: Optional[int]) -> TensorParallel:
    """A layer's group: the current one, or (explicit rank/size, for shard tests) one without a
    process group, which can load its slice but not run collectives."""
    if tp_rank is None and tp_size is None:
        return current_tensor_parallel()
    return TensorParallel(tp_rank or 0, tp_size or 1, None)


def default_backend(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def init_tensor_parallel(rank: int, size: int, init_method: Optional[str] = None,
                         backend: Optional[str] = None, device: str = "cpu") -> TensorParallel:
    """Join (creating if needed) the default process group of `size` ranks and return this rank's
    TensorParallel. `init_method` is a torch.distributed URL ('tcp://host:port', 'file:///path');
    size 1 needs none."""
    if size == 1:
        return SINGLE_RANK
    if not init_method:
        raise ValueError(f"tp_size={size} needs an init method (tcp://host:port or file://path) for the "
                         f"process group")
    backend = backend or default_backend(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=size)
    elif dist.get_world_size() != size or dist.get_rank() != rank:
        raise ValueError(f"a process group of world size {dist.get_world_size()} (rank {dist.get_rank()}) "
                         f"already exists; cannot join as rank {rank} of {size}")
    return TensorParallel(rank, size, dist.group.WORLD)


def kv_heads_per_rank(total_kv_heads: int, tp_size: int) -> int:
    """KV heads one rank holds: its share, or one replicated head when ranks outnumber kv heads."""
    return max(total_kv_heads // tp_size, 1)


def check_tensor_parallel_config(num_heads: int, num_kv_heads: int, tp_size: int,
                                 what: str = "the model") -> None:
    """Refuse at start a tp_size the attention heads cannot be split over."""
    if tp_size < 1:
        raise ValueError(f"--tp-size must be >= 1, got {tp_size}")
    if num_heads % tp_size:
        raise ValueError(f"--tp-size {tp_size} does not divide {what}'s num_attention_heads={num_heads}; "
                         f"choose a tp size that divides it")
    if num_kv_heads % tp_size and tp_size % num_kv_heads:
        raise ValueError(f"--tp-size {tp_size} and {what}'s num_key_value_heads={num_kv_heads}: one must "
                         f"divide the other (kv heads are split, or replicated when ranks outnumber them)")
