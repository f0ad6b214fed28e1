"""Tensor parallelism over torch.distributed (NCCL on CUDA, gloo on CPU).

Model files never see it: the loader builds a model inside `tensor_parallel(tp)`, and each
parallel layer reads `current_tensor_parallel()` when it is constructed and keeps it.
"""

from sglang.runtime.distributed.tensor_parallel import (
    SINGLE_RANK,
    TensorParallel,
    check_tensor_parallel_config,
    current_tensor_parallel,
    init_tensor_parallel,
    kv_heads_per_rank,
    resolve_tensor_parallel,
    tensor_parallel,
)

__all__ = [
    "SINGLE_RANK",
    "TensorParallel",
    "check_tensor_parallel_config",
    "current_tensor_parallel",
    "init_tensor_parallel",
    "kv_heads_per_rank",
    "resolve_tensor_parallel",
    "tensor_parallel",
]
