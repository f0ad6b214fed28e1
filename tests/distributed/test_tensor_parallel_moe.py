"""Mixture-of-experts families at TP=2 and TP=4 over gloo on CPU give the TP=1 logits: every rank
holds every expert with its slice of the intermediate dim, and the partial sums are all-reduced.
Phi-3 rides along: its fused qkv / gate_up checkpoint tensors are cut lazily before sharding."""

from __future__ import annotations

import pytest

from sglang.runtime.distributed import SINGLE_RANK
from sglang.testing.fixtures import tiny_model_dir
from tests.distributed.tp_worker import assert_same, run_script, run_sharded


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe", "qwen3_moe", "phi3", "deepseek_v2", "deepseek_v3"])
def test_moe_tensor_parallel_matches_single_rank(arch, tmp_path):
    path = tiny_model_dir(arch)
    reference = run_script(path, SINGLE_RANK)
    results = run_sharded(path, str(tmp_path))
    assert sorted(results) == ["tp2_group0", "tp2_group1", "tp4"]
    for name, result in results.items():
        assert_same(reference, result, f"{arch} {name}")
