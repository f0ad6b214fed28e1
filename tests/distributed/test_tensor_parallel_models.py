"""TP=2 and TP=4 over gloo on CPU give the TP=1 logits (prompt and decode steps, float32, 1e-5)."""

from __future__ import annotations

import pytest

from sglang.runtime.distributed import SINGLE_RANK
from sglang.testing.fixtures import tiny_model_dir, tiny_vlm_dir
from tests.distributed.tp_worker import assert_same, run_script, run_sharded

CASES = {
    "llama": ("llama", {}),
    "qwen2": ("qwen2", {}),  # qkv bias, tied embeddings
    "qwen3": ("qwen3", {}),  # per-head q/k norms
    "mistral": ("mistral", {}),
    "gemma2": ("gemma2", {}),  # soft-capping, sliding window, scaled embeddings
    # One kv head: replicated on every rank at TP=2 and TP=4.
    "llama_one_kv_head": ("llama", {"num_key_value_heads": 1}),
    # Vision-language: the CLIP tower and projector shard like the language model.
    "llava": ("llava", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tensor_parallel_matches_single_rank(case, tmp_path):
    arch, overrides = CASES[case]
    path = tiny_vlm_dir(arch) if overrides is None else tiny_model_dir(arch, **overrides)
    reference = run_script(path, SINGLE_RANK)
    results = run_sharded(path, str(tmp_path))
    assert sorted(results) == ["tp2_group0", "tp2_group1", "tp4"]
    for name, result in results.items():
        assert_same(reference, result, f"{case} {name}")
