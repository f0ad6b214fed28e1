"""ModelConfig fields and the model registry."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import torch

from sglang.runtime.models.model_config import ModelConfig, resolve_dtype
from sglang.runtime.models.registry import get_model_class, supported_architectures

FIVE = ["Gemma2ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]


def _with_config(src: str, dst, **changes) -> str:
    out = os.path.join(str(dst), "ckpt")
    shutil.copytree(src, out)
    path = os.path.join(out, "config.json")
    cfg = json.load(open(path))
    cfg.update(changes)
    json.dump(cfg, open(path, "w"))
    return out


def test_fields_from_config(tiny_ckpt):
    mc = ModelConfig(tiny_ckpt("gemma2"))
    assert mc.architecture == "Gemma2ForCausalLM"
    shape = (mc.num_hidden_layers, mc.num_attention_heads, mc.num_key_value_heads, mc.head_dim)
    assert shape == (2, 4, 2, 16)
    assert mc.vocab_size == mc.hf_config.vocab_size
    assert mc.context_len == 1024
    assert mc.sliding_window == 8
    assert mc.dtype == torch.float32
    assert ModelConfig(tiny_ckpt("qwen2")).sliding_window is None


def test_eos_ids_merge_config_and_generation_config(tiny_ckpt, tmp_path):
    path = _with_config(tiny_ckpt("llama"), tmp_path, eos_token_id=7)
    with open(os.path.join(path, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [7, 11, 12]}, f)
    assert ModelConfig(path).hf_eos_token_ids == {7, 11, 12}
    os.remove(os.path.join(path, "generation_config.json"))
    assert ModelConfig(path).hf_eos_token_ids == {7}


def test_context_length_override(tiny_ckpt, caplog):
    path = tiny_ckpt("llama")
    assert ModelConfig(path, context_length=100).context_len == 100
    with caplog.at_level(logging.WARNING):
        assert ModelConfig(path, context_length=4096).context_len == 4096
    assert "exceeds the model's limit of 1024" in caplog.text


def test_rope_scaling_extends_the_limit(tiny_ckpt):
    path = tiny_ckpt("llama", rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                     max_position_embeddings=64)
    assert ModelConfig(path).context_len == 128


@pytest.mark.parametrize("name,expected", [
    ("float32", torch.float32), ("fp32", torch.float32), ("float", torch.float32),
    ("bfloat16", torch.bfloat16), ("bf16", torch.bfloat16),
    ("float16", torch.float16), ("half", torch.float16), ("fp16", torch.float16),
])
def test_explicit_dtype_names(name, expected, tiny_ckpt):
    assert ModelConfig(tiny_ckpt("llama"), dtype=name).dtype == expected


def test_auto_dtype_depends_on_device(tiny_ckpt, tmp_path):
    path = _with_config(tiny_ckpt("llama"), tmp_path, torch_dtype="bfloat16", dtype="bfloat16")
    assert ModelConfig(path, device="cpu").dtype == torch.float32
    assert ModelConfig(path, device="cuda").dtype == torch.bfloat16  # no CUDA needed to resolve
    hf_cfg = ModelConfig(tiny_ckpt("llama")).hf_config  # says float32: kept on GPU too
    assert resolve_dtype("auto", hf_cfg, "cuda") == torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        ModelConfig(path, dtype="float8")


def test_registry_lists_and_imports_the_five_families():
    # The five text families, plus the vision-language ones (whose classes wrap them).
    assert set(FIVE) <= set(supported_architectures()) and supported_architectures() == sorted(supported_architectures())
    for arch in supported_architectures():
        cls = get_model_class(arch)
        assert cls.__name__ == arch and hasattr(cls, "load_weights")
    with pytest.raises(ValueError, match="'GPT2LMHeadModel' is not supported.*Qwen3ForCausalLM"):
        get_model_class("GPT2LMHeadModel")
