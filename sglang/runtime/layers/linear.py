"""Linear layers that know how they would be split across tensor-parallel ranks.

Each layer takes its `TensorParallel` (rank, size, process group) from the scope the loader built
the model in (`runtime/distributed/`), so model files never pass it; explicit (tp_rank, tp_size)
build a shard-only layer for tests (it loads its slice but has no group to reduce over). Parameters
hold only this rank's part and `weight_loader(param, checkpoint_tensor, shard_id=None)` copies the
matching slice; the checkpoint tensor may be a `LazyWeight`, so only that slice is read from disk.
A row-parallel layer all-reduces its partial sums and adds its bias once, after the reduction.

Fused layers (`MergedColumnParallelLinear` for gate|up, `QKVParallelLinear` for q|k|v) receive the
separate checkpoint tensors one at a time, each with a shard id naming its slot.

How the weight is stored and multiplied is the layer's `quant_method` (`layers/quantization/`):
unquantized by default; a `--quantization` config swaps it with `set_quant_method` before the
weights load.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from sglang.runtime.distributed.lazy_weight import WeightLike, materialize, reads_slices
from sglang.runtime.distributed.tensor_parallel import resolve_tensor_parallel
from sglang.runtime.layers.quantization.base import LinearMethod
from sglang.runtime.layers.quantization.unquantized import UnquantizedLinearMethod

ShardId = Union[int, str, None]


def copy_checked(dst: torch.Tensor, src: WeightLike, what: str = "parameter") -> None:
    """dst.copy_(src) with an error that says which shapes disagree (reads a lazy src only then)."""
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(
            f"shape mismatch for {what}: checkpoint has {tuple(src.shape)}, model expects "
            f"{tuple(dst.shape)}; is the config.json consistent with the weights?"
        )
    with torch.no_grad():
        dst.copy_(materialize(src))


def check_full_shape(loaded: WeightLike, expected: Sequence[int], what: str) -> None:
    if tuple(loaded.shape) != tuple(expected):
        raise ValueError(
            f"shape mismatch for {what}: checkpoint has {tuple(loaded.shape)}, model expects "
            f"{tuple(expected)}; is the config.json consistent with the weights?"
        )


def _divide(total: int, parts: int, what: str) -> int:
    if total % parts:
        raise ValueError(f"{what}={total} is not divisible by tp_size={parts}; choose another --tp-size")
    return total // parts


class LinearBase(nn.Module):
    """y = x W^T + b with W stored as [out_features_on_this_rank, in_features_on_this_rank]."""

    def __init__(self, in_features: int, out_features: int, bias: bool,
                 tp_rank: Optional[int] = None, tp_size: Optional[int] = None,
                 params_dtype: Optional[torch.dtype] = None):
        super().__init__()
        self.tp = resolve_tensor_parallel(tp_rank, tp_size)
        self.tp_rank, self.tp_size = self.tp.rank, self.tp.size
        self.in_features, self.out_features = in_features, out_features
        dtype = params_dtype or torch.get_default_dtype()
        self.params_dtype = dtype
        self.quant_method: LinearMethod = UnquantizedLinearMethod()
        self.quant_method.create_weights(self, dtype)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype), requires_grad=False)
            self.bias.weight_loader = self.weight_loader
        else:
            self.register_parameter("bias", None)

    @reads_slices
    def weight_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: ShardId = None) -> None:
        copy_checked(param.data, loaded)

    def set_quant_method(self, method: LinearMethod) -> None:
        """Store and compute the weight with `method` (replaces the weight parameter; load after)."""
        self.quant_method = method
        method.create_weights(self, self.params_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_method.apply(self, x, self.bias)

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, bias={self.bias is not None}, "
                f"tp={self.tp_rank}/{self.tp_size}")


class ReplicatedLinear(LinearBase):
    """Every rank holds the whole weight."""


class ColumnParallelLinear(LinearBase):
    """Output features split across ranks; each rank's output is its own slice (no gather)."""

    def __init__(self, input_size: int, output_size: int, bias: bool = True, tp_rank: Optional[int] = None,
                 tp_size: Optional[int] = None, params_dtype: Optional[torch.dtype] = None):
        self.full_output_size = output_size
        size = resolve_tensor_parallel(tp_rank, tp_size).size
        super().__init__(input_size, _divide(output_size, size, "output_size"), bias, tp_rank,
                         tp_size, params_dtype)

    def _copy_rows(self, param: nn.Parameter, loaded: WeightLike, dst_start: int, src_start: int,
                   rows: int) -> None:
        """Copy loaded[src_start:src_start+rows] into param[dst_start:dst_start+rows] (dim 0)."""
        with torch.no_grad():
            param.data.narrow(0, dst_start, rows).copy_(materialize(loaded.narrow(0, src_start, rows)))

    @reads_slices
    def weight_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: ShardId = None) -> None:
        expected = (self.full_output_size, *param.shape[1:])
        check_full_shape(loaded, expected, "column-parallel weight")
        rows = param.shape[0]
        self._copy_rows(param, loaded, 0, self.tp_rank * rows, rows)


class MergedColumnParallelLinear(ColumnParallelLinear):
    """Several column-parallel outputs side by side (e.g. [gate | up]); shard_id = index."""

    def __init__(self, input_size: int, output_sizes: Sequence[int], bias: bool = True,
                 tp_rank: Optional[int] = None, tp_size: Optional[int] = None,
                 params_dtype: Optional[torch.dtype] = None):
        self.output_sizes = list(output_sizes)
        for size in self.output_sizes:
            _divide(size, resolve_tensor_parallel(tp_rank, tp_size).size, "merged output size")
        super().__init__(input_size, sum(self.output_sizes), bias, tp_rank, tp_size, params_dtype)

    @reads_slices
    def weight_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: ShardId = None) -> None:
        if shard_id is None:  # a checkpoint that already stores the fused tensor
            check_full_shape(loaded, (self.full_output_size, *param.shape[1:]), "merged weight")
            for i in range(len(self.output_sizes)):
                start = sum(self.output_sizes[:i])
                self.weight_loader(param, loaded.narrow(0, start, self.output_sizes[i]), i)
            return
        if not isinstance(shard_id, int) or not 0 <= shard_id < len(self.output_sizes):
            raise ValueError(f"shard_id={shard_id!r} must index output_sizes={self.output_sizes}")
        full = self.output_sizes[shard_id]
        check_full_shape(loaded, (full, *param.shape[1:]), f"merged shard {shard_id}")
        rows = full // self.tp_size
        dst = sum(self.output_sizes[:shard_id]) // self.tp_size
        self._copy_rows(param, loaded, dst, self.tp_rank * rows, rows)


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q|k|v projection; shard ids 'q', 'k', 'v'.

    Heads are split across ranks; with more ranks than kv heads, each kv head is replicated on
    tp_size / num_kv_heads consecutive ranks."""

    def __init__(self, hidden_size: int, head_size: int, total_num_heads: int,
                 total_num_kv_heads: Optional[int] = None, bias: bool = True, tp_rank: Optional[int] = None,
                 tp_size: Optional[int] = None, params_dtype: Optional[torch.dtype] = None):
        total_num_kv_heads = total_num_kv_heads or total_num_heads
        explicit_size, tp_size = tp_size, resolve_tensor_parallel(tp_rank, tp_size).size
        self.head_size = head_size
        self.num_heads = _divide(total_num_heads, tp_size, "num_attention_heads")
        if tp_size >= total_num_kv_heads:
            _divide(tp_size, total_num_kv_heads, "num_key_value_heads replicas")
            self.num_kv_heads, self.kv_replicas = 1, tp_size // total_num_kv_heads
        else:
            self.num_kv_heads = _divide(total_num_kv_heads, tp_size, "num_key_value_heads")
            self.kv_replicas = 1
        self.total_num_heads, self.total_num_kv_heads = total_num_heads, total_num_kv_heads
        self.q_size = self.num_heads * head_size
        self.kv_size = self.num_kv_heads * head_size
        full_out = (self.num_heads + 2 * self.num_kv_heads) * head_size * tp_size
        super().__init__(hidden_size, full_out, bias, tp_rank, explicit_size, params_dtype)

    def _shard_layout(self, shard_id: ShardId) -> tuple[int, int, int, int]:
        """(full rows in checkpoint, dst offset, rows on this rank, src offset) for a shard."""
        if shard_id == "q":
            return (self.total_num_heads * self.head_size, 0, self.q_size, self.tp_rank * self.q_size)
        if shard_id in ("k", "v"):
            dst = self.q_size if shard_id == "k" else self.q_size + self.kv_size
            src = (self.tp_rank // self.kv_replicas) * self.kv_size
            return (self.total_num_kv_heads * self.head_size, dst, self.kv_size, src)
        raise ValueError(f"shard_id must be 'q', 'k' or 'v', got {shard_id!r}")

    @reads_slices
    def weight_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: ShardId = None) -> None:
        if shard_id is None:
            raise ValueError("QKVParallelLinear needs shard_id 'q', 'k' or 'v' for each checkpoint tensor")
        full, dst, rows, src = self._shard_layout(shard_id)
        check_full_shape(loaded, (full, *param.shape[1:]), f"{shard_id}_proj")
        self._copy_rows(param, loaded, dst, src, rows)


class RowParallelLinear(LinearBase):
    """Input features split across ranks; the partial outputs are summed (all-reduce)."""

    def __init__(self, input_size: int, output_size: int, bias: bool = True, tp_rank: Optional[int] = None,
                 tp_size: Optional[int] = None, params_dtype: Optional[torch.dtype] = None):
        self.full_input_size = input_size
        size = resolve_tensor_parallel(tp_rank, tp_size).size
        super().__init__(_divide(input_size, size, "input_size"), output_size, bias, tp_rank,
                         tp_size, params_dtype)

    @reads_slices
    def weight_loader(self, param: nn.Parameter, loaded: WeightLike, shard_id: ShardId = None) -> None:
        if param.dim() == 1:  # bias: replicated, added once after the reduction
            copy_checked(param.data, loaded, "row-parallel bias")
            return
        check_full_shape(loaded, (param.shape[0], self.full_input_size), "row-parallel weight")
        cols = param.shape[1]
        copy_checked(param.data, loaded.narrow(1, self.tp_rank * cols, cols), "row-parallel weight")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp.size == 1:
            return self.quant_method.apply(self, x, self.bias)
        out = self.tp.all_reduce(self.quant_method.apply(self, x, None))
        return out if self.bias is None else out + self.bias
