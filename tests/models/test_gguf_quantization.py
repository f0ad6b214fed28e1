"""`--quantization gguf` on tiny GGUF files: the layers keep their blocks and compute, with the C++
kernels, the model their torch twins compute (llama.cpp's arithmetic: activations rounded to int8
per 32-value block), close to the default path (weights dequantized at load, float activations),
for every served architecture and block type;
layers the kernels cannot serve fall back to dequantized weights, saying why; unusable setups fail
with errors naming the flag."""

from __future__ import annotations

import logging
from typing import List

import gguf
import numpy as np
import pytest
import torch

from sglang.kernels.cpu.gguf import gguf_extension
from sglang.runtime.layers.linear import LinearBase
from sglang.runtime.layers.quantization import get_quantization_config
from sglang.runtime.layers.quantization.gguf import GGUFEmbeddingMethod, GGUFLinearMethod
from sglang.runtime.layers.quantization.unquantized import UnquantizedLinearMethod
from sglang.runtime.layers.vocab_parallel_embedding import VocabParallelEmbedding
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_gguf_path, tiny_model_dir
from sglang.testing.tiny_gguf import write_tiny_gguf
from tests.models.harness import KVHarness

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma2")
BLOCK_TYPES = ("Q4_0", "Q4_1", "Q8_0")
PROMPT_LENS = (3, 9, 21)
needs_kernels = pytest.mark.skipif(gguf_extension() is None, reason="the C++ CPU kernels cannot be built here")


def _logits(model, mc: ModelConfig) -> torch.Tensor:
    """Every prompt position's logits of a batched extend, then three batched decode steps."""
    h = KVHarness.for_config(model, mc)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, mc.vocab_size, (n,), generator=gen).tolist() for n in PROMPT_LENS]
    rows = [h.new_request() for _ in prompts]
    out = [h.extend(rows, prompts, return_logprob=True).input_logits]
    for step in range(3):
        out.append(h.decode(rows, [(11 * step + 5 * i) % mc.vocab_size for i in range(len(rows))]).next_token_logits)
    return torch.cat(out)


def _methods(model) -> List[object]:
    return [m.quant_method for m in model.modules() if isinstance(m, (LinearBase, VocabParallelEmbedding))]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@needs_kernels
@pytest.mark.parametrize("tensor_type", BLOCK_TYPES)
@pytest.mark.parametrize("arch", ARCHS)
def test_blocks_compute_the_dequantized_model(arch, tensor_type, monkeypatch):
    mc = ModelConfig(tiny_gguf_path(arch, tensor_type))
    dense, quant = load_model(mc), load_model(mc, quantization="gguf")
    methods = _methods(quant)
    assert methods and all(isinstance(m, (GGUFLinearMethod, GGUFEmbeddingMethod)) for m in methods)
    assert all(p.dtype == torch.uint8 for n, p in quant.named_parameters() if p.dim() == 2)
    blocks = dict(quant.named_parameters())["model.layers.0.self_attn.qkv_proj.weight"]
    from sglang.kernels.ref.gguf_quant import gguf_dequantize

    qtype = gguf.GGMLQuantizationType[tensor_type].value
    assert torch.equal(gguf_dequantize(blocks, qtype), dict(dense.named_parameters())[
        "model.layers.0.self_attn.qkv_proj.weight"])  # the file's numbers, q/k rows reordered alike
    got = _logits(quant, mc)
    assert not torch.isnan(got).any()
    with monkeypatch.context() as patch:  # the same blocks through the torch twins
        patch.setattr("sglang.kernels.cpu.gguf.gguf_extension", lambda: None)
        twin = _logits(quant, mc)
    # The kernels match the twins to float32 summation order (tests/unit/test_gguf_cpu_kernels.py),
    # but an activation on a rounding boundary can land on the other int8 value, and a random tiny
    # model amplifies that: close, not equal.
    assert _rel_err(got, twin) < 2e-2, _rel_err(got, twin)
    # Rounding activations to 8 bits moves a random tiny model's logits by a few percent.
    assert _rel_err(got, _logits(dense, mc)) < 0.1


@needs_kernels
def test_bfloat16_activations_on_blocks():
    mc = ModelConfig(tiny_gguf_path("llama", "Q4_1"), dtype="bfloat16")
    ref = _logits(load_model(mc), mc)
    got = _logits(load_model(mc, quantization="gguf"), mc)
    # Both round activations to bfloat16; the blocks path then rounds them to int8 per 32 values.
    assert _rel_err(got, ref) < 0.1


@needs_kernels
def test_layers_of_other_or_mixed_types_are_dequantized_and_logged(tmp_path, caplog):
    rng = np.random.default_rng(0)
    # blk.0's k in Q4_0 next to q and v in Q8_0: the fused qkv cannot keep one block type.
    k_blocks = gguf.quants.quantize(rng.standard_normal((32, 64)).astype(np.float32), gguf.GGMLQuantizationType.Q4_0)
    path = write_tiny_gguf(tiny_model_dir("llama"), str(tmp_path / "mixed.gguf"), "Q8_0",
                           raw_tensors={"blk.0.attn_k.weight": (k_blocks, "Q4_0")})
    mc = ModelConfig(path)
    with caplog.at_level(logging.INFO, logger="sglang.runtime.layers.quantization.gguf"):
        quant = load_model(mc, quantization="gguf")
    qkv0 = quant.model.layers[0].self_attn.qkv_proj
    assert isinstance(qkv0.quant_method, UnquantizedLinearMethod) and qkv0.weight.dtype == torch.float32
    assert isinstance(quant.model.layers[1].self_attn.qkv_proj.quant_method, GGUFLinearMethod)
    assert "model.layers.0.self_attn.qkv_proj (parts of mixed types Q4_0/Q8_0)" in caplog.text
    assert _rel_err(_logits(quant, mc), _logits(load_model(mc), mc)) < 0.1  # int8 activations elsewhere


@needs_kernels
def test_types_without_a_kernel_stay_dequantized(caplog):
    mc = ModelConfig(tiny_gguf_path("llama", "F16"))
    with caplog.at_level(logging.INFO, logger="sglang.runtime.layers.quantization.gguf"):
        quant = load_model(mc, quantization="gguf")
    assert all(not isinstance(m, (GGUFLinearMethod, GGUFEmbeddingMethod)) for m in _methods(quant))
    assert "F16 has no block kernel" in caplog.text
    assert torch.equal(_logits(quant, mc), _logits(load_model(mc), mc))


@needs_kernels
def test_blocks_take_a_fraction_of_the_memory():
    mc = ModelConfig(tiny_gguf_path("llama", "Q4_1"))

    def nbytes(model) -> int:
        return sum(p.numel() * p.element_size() for p in model.parameters())

    assert nbytes(load_model(mc, quantization="gguf")) < nbytes(load_model(mc)) / 5


def test_unusable_setups_fail_naming_the_flag():
    with pytest.raises(ValueError, match="needs a GGUF checkpoint"):
        load_model(ModelConfig(tiny_model_dir("llama")), quantization="gguf")
    mc = ModelConfig(tiny_gguf_path("llama", "Q8_0"))
    with pytest.raises(ValueError, match="computes on the CPU"):
        get_quantization_config("gguf").prepare(load_model(mc), mc, "cuda")
    with pytest.raises(ValueError, match="unknown --quantization 'bitsandbytes'"):
        get_quantization_config("bitsandbytes")
    with pytest.raises(ValueError, match="quantization must be one of"):
        ServerArgs(model_path=tiny_model_dir("llama"), device="cpu", quantization="bitsandbytes")


def test_without_kernels_every_weight_is_dequantized(monkeypatch, caplog):
    monkeypatch.setattr("sglang.kernels.cpu.gguf.gguf_extension", lambda: None)
    mc = ModelConfig(tiny_gguf_path("llama", "Q8_0"))
    with caplog.at_level(logging.WARNING, logger="sglang.runtime.layers.quantization.gguf"):
        quant = load_model(mc, quantization="gguf")
    assert all(isinstance(p, torch.nn.Parameter) and p.dtype == torch.float32 for p in quant.parameters())
    assert "C++ kernels are unavailable" in caplog.text
    assert torch.equal(_logits(quant, mc), _logits(load_model(mc), mc))
