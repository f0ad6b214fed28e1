"""AWQ (GEMM layout) and GPTQ (sym/asym, group sizes, act-order, v1/v2 zeros) INT4 checkpoints:
logits through our loader equal float32 math on the dequantized weights; bad configs and
tensors fail naming the problem."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import sglang
from sglang.runtime.layers.linear import LinearBase
from sglang.runtime.layers.quantization.int4 import Int4LinearMethod
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.tiny_quantized import write_quantized
from tests.quantization.helpers import logits

WIDE = {"hidden_size": 128, "intermediate_size": 256}  # several 32/64-input groups, whole 128-groups
CASES = [
    ("awq", {"group_size": 128}),
    ("awq", {"group_size": 64}),
    ("awq", {"group_size": 32}),
    ("gptq", {"group_size": 128, "sym": True}),
    ("gptq", {"group_size": 64, "sym": False}),
    ("gptq", {"group_size": 32, "sym": True, "act_order": True}),
    ("gptq", {"group_size": 64, "sym": False, "act_order": True}),
    ("gptq", {"group_size": -1, "gptq_format": "gptq_v2"}),
]


def _quantized(tmp_path, fmt, arch="llama", dims=WIDE, **options) -> str:
    return write_quantized(tiny_model_dir(arch, **dims), str(tmp_path / fmt), fmt, **options)


def _int4_layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, LinearBase) and isinstance(m.quant_method, Int4LinearMethod)]


@pytest.mark.parametrize("fmt,options", CASES, ids=[f"{f}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for f, o in CASES])
def test_checkpoint_logits_equal_dequantized_float_math(tmp_path, fmt, options):
    path = _quantized(tmp_path, fmt, **options)
    mc = ModelConfig(path)
    model = load_model(mc)  # config.json's quantization_config decides
    layers = _int4_layers(model)
    assert len(layers) == 4 * mc.num_hidden_layers and all(m.weight is None for m in layers)
    ref_mc = ModelConfig(os.path.join(path, "dequantized"))
    torch.testing.assert_close(logits(model, mc), logits(load_model(ref_mc), ref_mc), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["qwen2", "gemma2"])
def test_other_archs(tmp_path, arch):
    path = _quantized(tmp_path, "gptq", arch=arch, dims={}, group_size=32, act_order=True)
    mc, ref_mc = ModelConfig(path), ModelConfig(os.path.join(path, "dequantized"))
    torch.testing.assert_close(logits(load_model(mc), mc), logits(load_model(ref_mc), ref_mc), atol=1e-4, rtol=1e-4)


def test_int4_weights_take_an_eighth_of_float32(tmp_path):
    mc = ModelConfig(_quantized(tmp_path, "awq", group_size=128))
    nbytes = sum(p.numel() * p.element_size() for m in _int4_layers(load_model(mc)) for p in m.parameters())
    dense = load_model(ModelConfig(tiny_model_dir("llama", **WIDE)))
    float_bytes = sum(m.weight.numel() * 4 for m in dense.modules() if isinstance(m, LinearBase))
    assert nbytes < float_bytes / 6  # half a byte per weight, plus a scale and zero per 128


def test_engine_generates_from_an_awq_checkpoint(tmp_path):
    with sglang.Engine(model_path=_quantized(tmp_path, "awq"), device="cpu", random_seed=0) as eng:
        out = eng.generate("Hello there", {"max_new_tokens": 4, "temperature": 0.0})
    assert out["meta_info"]["completion_tokens"] >= 1


# ---------------------------------------------------------------- bad input


def _edit_config(path: str, edit) -> str:
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    edit(cfg["quantization_config"])
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    return path


@pytest.mark.parametrize("fmt,edit,message", [
    ("awq", lambda qc: qc.update(bits=8), r"bits must be one of \[4\], got 8"),
    ("awq", lambda qc: qc.update(version="gemv"), "version 'gemv' is not supported"),
    ("awq", lambda qc: qc.update(zero_point=False), "zero_point must be one of"),
    ("gptq", lambda qc: qc.update(group_size=96), r"group_size must be one of \[-1, 32, 64, 128\], got 96"),
    ("gptq", lambda qc: qc.update(checkpoint_format="marlin"), "checkpoint_format 'marlin' is not supported"),
    # The config disagrees with the tensors: a shape error naming the tensor and both shapes.
    ("gptq", lambda qc: qc.update(group_size=32), r"cannot load checkpoint tensor .*shape mismatch for gptq (qzeros|scales)"
                                                  r" .* group_size 32: checkpoint has \((1|2), \d+\), expected \((4|8), "),
])
def test_malformed_int4_config_names_the_problem(tmp_path, fmt, edit, message):
    path = _edit_config(_quantized(tmp_path, fmt, group_size=128), edit)
    with pytest.raises(ValueError, match=message):
        load_model(ModelConfig(path))


def test_bad_int4_tensors_are_refused(tmp_path):
    path = _quantized(tmp_path, "gptq", group_size=32, act_order=True)
    tensors = load_file(os.path.join(path, "model.safetensors"))
    attn = "model.layers.0.self_attn."
    cases = [
        (attn + "k_proj.qweight", tensors[attn + "k_proj.qweight"].float(), "must be int32 in the checkpoint"),
        (attn + "k_proj.qweight", tensors[attn + "k_proj.qweight"][:, :-8], r"checkpoint has \(16, 56\), expected \(16, 64\)"),
        (attn + "k_proj.g_idx", tensors[attn + "k_proj.g_idx"] + 4, r"group indices in \[0, 4\)"),
        (attn + "v_proj.g_idx", tensors[attn + "v_proj.g_idx"].flip(0), "different gptq g_idx"),
    ]
    for key, value, message in cases:
        save_file(dict(tensors, **{key: value.contiguous()}), os.path.join(path, "model.safetensors"))
        with pytest.raises(ValueError, match=f"cannot load checkpoint tensor '{key}'.*{message}"):
            load_model(ModelConfig(path))


def test_int4_flags_need_a_checkpoint():
    with pytest.raises(ValueError, match="--quantization awq needs a checkpoint whose config.json has a awq"):
        load_model(ModelConfig(tiny_model_dir("llama")), quantization="awq")


def test_rtn_int4_of_a_loaded_model():
    from sglang.runtime.layers.quantization.int4_math import dequantize_int4
    from sglang.runtime.layers.quantization.rtn import quantize_model_int4_rtn

    mc = ModelConfig(tiny_model_dir("llama", **WIDE))
    model, dense = load_model(mc), load_model(mc)
    float_weights = {id(m): m.weight.detach().clone() for m in model.modules() if isinstance(m, LinearBase)}
    layers = quantize_model_int4_rtn(model, group_size=64)
    assert len(layers) == 4 * mc.num_hidden_layers and all(m.weight is None for m in layers)
    by_name = dict(dense.named_modules())
    for name, layer in model.named_modules():
        if layer in layers:
            w = dequantize_int4(layer.qweight, layer.scales, layer.qzeros, layer.g_idx, layer.in_features)
            # Round to nearest: within half a step of its group (a step is that group's scale).
            step = layer.scales.repeat_interleave(64, dim=1)
            assert ((w - float_weights[id(layer)]).abs() <= step / 2 + 1e-6).all()
            by_name[name].weight.data.copy_(w)
    torch.testing.assert_close(logits(model, mc), logits(dense, mc), atol=1e-4, rtol=1e-4)
