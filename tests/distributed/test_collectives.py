"""TensorParallel collectives over gloo (2 spawned ranks), their single-rank no-ops, and the scope
layers read their group from."""

from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp

from sglang.runtime.distributed import (
    SINGLE_RANK,
    TensorParallel,
    current_tensor_parallel,
    init_tensor_parallel,
    tensor_parallel,
)
from sglang.runtime.layers.linear import RowParallelLinear
from tests.distributed.tp_worker import rendezvous, shutdown


def _collectives_rank(rank: int, world: int, init_method: str, out_dir: str) -> None:
    tp = init_tensor_parallel(rank, world, init_method, backend="gloo")
    try:
        x = torch.full((2, 3), float(rank + 1))
        results = {
            "all_reduce": tp.all_reduce(x.clone()),
            "all_gather": tp.all_gather(x + 10 * rank, dim=-1),
            "gather_to_first": tp.gather_to_first(x, dim=0),
        }
        # A row-parallel layer: each rank holds half the input columns; the bias is added once.
        weight, bias = torch.arange(12.0).reshape(3, 4), torch.tensor([1.0, -2.0, 3.0])
        with tensor_parallel(tp):
            layer = RowParallelLinear(4, 3, bias=True)
        layer.weight.weight_loader(layer.weight, weight)
        layer.bias.weight_loader(layer.bias, bias)
        inputs = torch.arange(8.0).reshape(2, 4)
        results["row_parallel"] = layer(inputs[:, 2 * rank : 2 * rank + 2])
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        shutdown()


def test_collectives_over_gloo(tmp_path):
    mp.spawn(_collectives_rank, args=(2, rendezvous(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    ones = torch.ones(2, 3)
    gathered = torch.cat([ones, ones * 12], dim=-1)
    for r, out in enumerate(ranks):
        torch.testing.assert_close(out["all_reduce"], ones * 3)
        torch.testing.assert_close(out["all_gather"], gathered)
        expected = torch.arange(8.0).reshape(2, 4) @ torch.arange(12.0).reshape(3, 4).T + torch.tensor([1.0, -2.0, 3.0])
        torch.testing.assert_close(out["row_parallel"], expected)
    torch.testing.assert_close(ranks[0]["gather_to_first"], torch.cat([ones, ones * 2]))
    assert ranks[1]["gather_to_first"] is None


def test_single_rank_is_a_no_op_and_the_scope_is_restored():
    x = torch.randn(2, 3)
    assert SINGLE_RANK.all_reduce(x) is x and SINGLE_RANK.all_gather(x) is x
    assert SINGLE_RANK.gather_to_first(x) is x
    assert init_tensor_parallel(0, 1) is SINGLE_RANK
    shard_only = TensorParallel(1, 2, None)
    with tensor_parallel(shard_only):
        assert current_tensor_parallel() is shard_only
        layer = RowParallelLinear(4, 3, bias=False)
    assert current_tensor_parallel() is SINGLE_RANK
    assert (layer.tp_rank, layer.tp_size, layer.weight.shape) == (1, 2, (3, 2))
