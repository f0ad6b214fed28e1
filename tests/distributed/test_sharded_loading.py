"""Sharded loading: a rank reads only its slices of the parallel layers' checkpoint tensors, and a
tp size the heads cannot be split over is refused at start."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from sglang.runtime.distributed import TensorParallel, check_tensor_parallel_config, kv_heads_per_rank
from sglang.runtime.distributed.lazy_weight import LazyWeight
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.weight_utils import find_weight_files, iterate_weights
from sglang.testing.fixtures import tiny_model_dir

# Checkpoint tensors split over ranks (norms and other vectors are read whole by every rank).
SHARDED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
           "embed_tokens", "lm_head")


def _count_reads(monkeypatch) -> dict:
    """Elements read from the checkpoint per safetensors slice handle (keyed by its id)."""
    reads = defaultdict(int)
    original = LazyWeight.materialize

    def counting(self):
        out = original(self)
        reads[id(self._handle)] += out.numel()
        return out

    monkeypatch.setattr(LazyWeight, "materialize", counting)
    return reads


@pytest.mark.parametrize("tp_size,kv_heads", [(2, 2), (4, 2), (4, 1)])
def test_rank_reads_only_its_slices(monkeypatch, tp_size, kv_heads):
    path = tiny_model_dir("llama", num_key_value_heads=kv_heads)
    cfg = ModelConfig(path, dtype="float32", device="cpu")
    reads = _count_reads(monkeypatch)
    sizes = {}

    def recording(files, kind, progress=True, lazy=False):
        for name, tensor in iterate_weights(files, kind, progress, lazy):
            assert lazy and (isinstance(tensor, LazyWeight) or tensor.dim() == 0)
            sizes[name] = (tensor, tensor.numel())  # kept alive, so handle ids stay unique
            yield name, tensor

    monkeypatch.setattr("sglang.runtime.models.loader.iterate_weights", recording)
    # A shard-only group (no process group): loading needs no collective.
    load_model(cfg, "auto", "cpu", tp=TensorParallel(tp_size - 1, tp_size, None))
    assert sizes, "no checkpoint tensors streamed"
    for name, (tensor, numel) in sizes.items():
        read = reads[id(tensor._handle)]
        if any(part in name for part in SHARDED):
            # k/v of a replicated head: one head of the checkpoint's kv heads
            share = 1 / min(tp_size, kv_heads) if name.endswith(("k_proj.weight", "v_proj.weight")) else 1 / tp_size
            assert read <= numel * share + 1e-9, f"{name}: read {read} of {numel} elements"
        else:
            assert read == numel, f"{name}: replicated tensor read {read} of {numel}"


def test_lazy_weight_views_read_only_their_bytes():
    files, kind = find_weight_files(tiny_model_dir("llama"))
    name, lazy = next((n, t) for n, t in iterate_weights(files, kind, progress=False, lazy=True)
                      if n.endswith("down_proj.weight"))
    full = next(t for n, t in iterate_weights(files, kind, progress=False) if n == name)
    assert lazy.shape == full.shape and lazy.dim() == 2
    torch.testing.assert_close(lazy.narrow(1, 3, 5)[1:4].materialize(), full[1:4, 3:8])
    with pytest.raises(ValueError, match="outside a checkpoint tensor"):
        lazy.narrow(0, 1, full.shape[0])


def test_tp_size_not_dividing_heads_is_refused_at_load():
    cfg = ModelConfig(tiny_model_dir("llama"), dtype="float32", device="cpu")
    with pytest.raises(ValueError, match="--tp-size 3 does not divide .*num_attention_heads=4"):
        load_model(cfg, "dummy", "cpu", tp=TensorParallel(0, 3, None))
    with pytest.raises(ValueError, match="--quantization gguf is not supported with --tp-size 2"):
        load_model(cfg, "dummy", "cpu", quantization="gguf", tp=TensorParallel(0, 2, None))


def test_kv_heads_split_or_replicated():
    check_tensor_parallel_config(8, 2, 4)  # two ranks share each kv head
    check_tensor_parallel_config(8, 8, 4)  # two kv heads per rank
    with pytest.raises(ValueError, match="num_key_value_heads=3: one must divide the other"):
        check_tensor_parallel_config(12, 3, 4)
    assert [kv_heads_per_rank(kv, 4) for kv in (1, 2, 4, 8)] == [1, 1, 1, 2]
