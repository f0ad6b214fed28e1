"""Quantized layers split over tensor-parallel ranks: each rank's FP8 / INT4 tensors dequantize to
exactly its shard of the float model (the float model's own sharding is the reference), for
fused, column- and row-parallel layers and replicated kv heads."""

from __future__ import annotations

import os

import pytest
import torch

from sglang.runtime.distributed import TensorParallel
from sglang.runtime.layers.linear import LinearBase
from sglang.runtime.layers.quantization.fp8 import Fp8LinearMethod
from sglang.runtime.layers.quantization.fp8_math import dequantize
from sglang.runtime.layers.quantization.int4_math import dequantize_int4
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.tiny_quantized import write_quantized

WIDE = {"hidden_size": 128, "intermediate_size": 256}


def _dequantized(layer: LinearBase) -> torch.Tensor:
    method = layer.quant_method
    if isinstance(method, Fp8LinearMethod):
        return dequantize(layer.weight, getattr(layer, method.scheme.scale_name), method.block_k)
    return dequantize_int4(layer.qweight, layer.scales, layer.qzeros, layer.g_idx, layer.in_features)


CASES = [
    ("fp8-block", {"block": (32, 32)}),
    ("fp8-block", {"block": (48, 16)}),  # ragged row blocks across the column shards
    ("ct-channel", {}),
    ("fp8-tensor", {}),
    ("awq", {"group_size": 32}),
    ("gptq", {"group_size": 64, "sym": False}),
    ("gptq", {"group_size": 32, "act_order": True}),  # each rank's inputs use groups all over
]


@pytest.mark.parametrize("tp_size,kv_heads", [(2, 2), (4, 2)])
@pytest.mark.parametrize("fmt,options", CASES, ids=[f"{f}-{o}" for f, o in CASES])
def test_each_rank_holds_its_shard(tmp_path, fmt, options, tp_size, kv_heads):
    src = tiny_model_dir("llama", num_key_value_heads=kv_heads, **WIDE)
    path = write_quantized(src, str(tmp_path / fmt), fmt, **options)
    for rank in range(tp_size):
        tp = TensorParallel(rank, tp_size, None)  # shard-only: loading needs no collective
        quant = load_model(ModelConfig(path), tp=tp)
        ref = dict(load_model(ModelConfig(os.path.join(path, "dequantized")), tp=tp).named_modules())
        layers = [(n, m) for n, m in quant.named_modules() if isinstance(m, LinearBase)]
        assert len(layers) == 8
        for name, layer in layers:
            assert layer.tp_size == tp_size
            torch.testing.assert_close(_dequantized(layer), ref[name].weight, atol=0, rtol=0, msg=name)


def test_online_fp8_shards(tmp_path):
    for rank in range(2):
        model = load_model(ModelConfig(tiny_model_dir("llama", **WIDE)), quantization="fp8",
                           tp=TensorParallel(rank, 2, None))
        down = model.model.layers[0].mlp.down_proj
        assert down.weight.dtype == torch.float8_e4m3fn and down.weight.shape == (128, 128)


def test_block_scales_that_do_not_split_are_refused(tmp_path):
    path = write_quantized(tiny_model_dir("llama", **WIDE), str(tmp_path / "b"), "fp8-block", block=(16, 96))
    load_model(ModelConfig(path))  # whole on one rank: ragged edge blocks are fine
    with pytest.raises(ValueError, match=r"_proj.weight_scale_inv': \d+ inputs per rank are not whole FP8 blocks of 96"):
        load_model(ModelConfig(path), tp=TensorParallel(1, 2, None))


def test_engine_tp2_on_an_int4_checkpoint_equals_tp1(tmp_path):
    """Two gloo ranks on an AWQ checkpoint (weight-only, so the split changes only float summation
    order): the same greedy tokens and prompt log-probs as one rank."""
    import sglang

    path = write_quantized(tiny_model_dir("llama"), str(tmp_path / "awq"), "awq", group_size=32)
    prompts = ["The capital of France is a city that", "Numbers: one two three four five six"]
    outs = {}
    for tp_size in (1, 2):
        with sglang.Engine(model_path=path, device="cpu", tp_size=tp_size, random_seed=0) as engine:
            outs[tp_size] = engine.generate(prompts, {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True},
                                            return_logprob=True, logprob_start_len=0)
    for a, b in zip(outs[1], outs[2]):
        assert b["output_ids"] == a["output_ids"]
        lp_a = torch.tensor([t[0] for t in a["meta_info"]["input_token_logprobs"][1:]])
        lp_b = torch.tensor([t[0] for t in b["meta_info"]["input_token_logprobs"][1:]])
        torch.testing.assert_close(lp_b, lp_a, atol=1e-4, rtol=1e-4)
