"""FP8 checkpoints in the Hub's layouts (fp8 per-tensor / block-wise, compressed-tensors) and
online `--quantization fp8`: logits through our loader equal float32 math on the dequantized
weights with activations rounded to FP8 as the format says; bad configs fail naming the problem."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import sglang
from sglang.runtime.layers.linear import LinearBase
from sglang.runtime.layers.quantization.fp8 import Fp8LinearMethod
from sglang.runtime.layers.quantization.loading import layer_checkpoint_names
from sglang.runtime.layers.quantization.unquantized import UnquantizedLinearMethod
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.tiny_quantized import write_quantized
from tests.quantization.helpers import fp8_per_token, fp8_round, logits, rel_err, round_inputs

# (format, builder options, activation group the GEMM rounds by: None = whole token)
CASES = [
    ("fp8-tensor", {}, None),
    ("fp8-block", {}, 128),  # one 128x128 block covers a tiny layer (ragged edge blocks)
    ("fp8-block", {"block": (32, 32)}, 32),
    ("fp8-block", {"block": (48, 16)}, 16),  # blocks straddle the q|k|v and gate|up seams
    ("ct-channel", {}, None),
    ("ct-tensor", {}, None),
    ("ct-block", {"block": (32, 64)}, 64),
]


def _quantized(tmp_path, fmt, arch="llama", **options) -> str:
    return write_quantized(tiny_model_dir(arch), str(tmp_path / fmt), fmt, **options)


def _reference(path: str, group) -> torch.Tensor:
    mc = ModelConfig(os.path.join(path, "dequantized"))
    ref = load_model(mc)
    round_inputs(ref, lambda name, x: fp8_per_token(x, group))
    return logits(ref, mc)


def _fp8_layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, LinearBase) and isinstance(m.quant_method, Fp8LinearMethod)]


@pytest.mark.parametrize("fmt,options,group", CASES, ids=[f"{c[0]}-{c[1].get('block', '')}" for c in CASES])
def test_checkpoint_logits_equal_dequantized_float_math(tmp_path, fmt, options, group):
    path = _quantized(tmp_path, fmt, **options)
    mc = ModelConfig(path)
    model = load_model(mc)  # no flag: config.json's quantization_config decides
    layers = _fp8_layers(model)
    assert len(layers) == 2 * mc.num_hidden_layers * 2 and all(m.weight.dtype == torch.float8_e4m3fn for m in layers)
    got, want = logits(model, mc), _reference(path, group)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # Near the float model it came from: a loose bound (this random tiny model amplifies rounding).
    assert rel_err(got, logits(load_model(ModelConfig(tiny_model_dir("llama"))), mc)) < 0.5


@pytest.mark.parametrize("arch", ["qwen2", "gemma2"])
def test_block_checkpoint_other_archs(tmp_path, arch):
    path = _quantized(tmp_path, "fp8-block", arch=arch, block=(16, 32))
    mc = ModelConfig(path)
    torch.testing.assert_close(logits(load_model(mc), mc), _reference(path, 32), atol=1e-4, rtol=1e-4)


def test_static_input_scales_take_the_largest_of_a_fused_layer(tmp_path):
    path = _quantized(tmp_path, "fp8-tensor", static=True, input_amax=6.0)
    tensors = load_file(os.path.join(path, "model.safetensors"))
    mc = ModelConfig(os.path.join(path, "dequantized"))
    ref = load_model(mc)

    def static(name: str, x: torch.Tensor) -> torch.Tensor:
        scales = [tensors[part + ".input_scale"] for part in layer_checkpoint_names(ref, name)]
        return fp8_round(x, torch.stack(scales).max())

    round_inputs(ref, static)
    model = load_model(ModelConfig(path))
    torch.testing.assert_close(logits(model, mc), logits(ref, mc), atol=1e-4, rtol=1e-4)


def test_online_fp8_quantizes_a_float_checkpoint_per_channel(tmp_path):
    mc = ModelConfig(tiny_model_dir("llama"))
    model = load_model(mc, quantization="fp8")
    layers = _fp8_layers(model)
    assert len(layers) == 4 * mc.num_hidden_layers and all(m.weight.dtype == torch.float8_e4m3fn and m.weight_scale.shape == (m.out_features, 1)
                                    for m in layers)
    # The same per-channel rounding as a compressed-tensors channel checkpoint, written independently.
    path = _quantized(tmp_path, "ct-channel")
    torch.testing.assert_close(logits(model, mc), _reference(path, None), atol=1e-4, rtol=1e-4)
    dense = load_model(mc)
    nbytes = lambda m: sum(p.numel() * p.element_size() for layer in _fp8_layers(m) or  # noqa: E731
                           [x for x in m.modules() if isinstance(x, LinearBase)] for p in layer.parameters())
    assert nbytes(model) < nbytes(dense) / 3.5  # float32 -> one byte per weight plus row scales


def test_layers_listed_as_unquantized_stay_float(tmp_path):
    path = _quantized(tmp_path, "ct-channel", keep_float=("down_proj",))
    mc = ModelConfig(path)
    model = load_model(mc)
    down = model.model.layers[0].mlp.down_proj
    assert isinstance(down.quant_method, UnquantizedLinearMethod) and down.weight.dtype == torch.float32
    assert len(_fp8_layers(model)) == 3 * mc.num_hidden_layers
    mcr = ModelConfig(os.path.join(path, "dequantized"))
    ref = load_model(mcr)
    round_inputs(ref, lambda name, x: x if name.endswith("down_proj") else fp8_per_token(x))
    torch.testing.assert_close(logits(model, mc), logits(ref, mcr), atol=1e-4, rtol=1e-4)


def test_engine_generates_with_online_fp8():
    with sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu", quantization="fp8", random_seed=0) as eng:
        out = eng.generate("Hello there", {"max_new_tokens": 6, "temperature": 0.0})
    assert out["meta_info"]["completion_tokens"] >= 1 and isinstance(out["text"], str)


def test_engine_generates_from_an_fp8_checkpoint_without_a_flag(tmp_path):
    path = _quantized(tmp_path, "fp8-block", block=(32, 32))
    with sglang.Engine(model_path=path, device="cpu", random_seed=0) as eng:
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


@pytest.mark.parametrize("edit,message", [
    (lambda qc: qc.update(weight_block_size=[128]), "weight_block_size must be two positive integers"),
    (lambda qc: qc.update(weight_block_size=[0, 128]), "weight_block_size must be two positive integers"),
    (lambda qc: qc.update(activation_scheme="dynamc"), "activation_scheme must be 'dynamic' or 'static'"),
    (lambda qc: qc.update(fmt="e5m2"), "fmt 'e5m2' is not supported"),
    (lambda qc: qc.update(quant_method="bitsandbytes"), "quant_method 'bitsandbytes', which is not supported"),
    (lambda qc: qc.pop("quant_method"), "must be an object with a 'quant_method' string"),
    (lambda qc: qc.update(weight_block_size=[64, 64]), r"weight_scale_inv of 64x128 weight with blocks \[64, 64\] "
                                                      r"must be \(1, 2\), got \(2, 4\)"),
])
def test_malformed_fp8_config_names_the_problem(tmp_path, edit, message):
    path = _edit_config(_quantized(tmp_path, "fp8-block", block=(32, 32)), edit)
    with pytest.raises(ValueError, match=message):
        load_model(ModelConfig(path))


@pytest.mark.parametrize("edit,message", [
    (lambda qc: qc["config_groups"]["group_0"]["weights"].update(type="int", num_bits=4), "only FP8"),
    (lambda qc: qc.update(format="pack-quantized"), "format 'pack-quantized' is not supported"),
    (lambda qc: qc["config_groups"].update(group_1={}), "exactly one entry in config_groups"),
    (lambda qc: qc["config_groups"]["group_0"]["weights"].update(strategy="group"), "strategy 'group'"),
    (lambda qc: qc["config_groups"]["group_0"]["input_activations"].update(dynamic=False),
     "input_activations strategy 'token' with dynamic=False"),
    (lambda qc: qc.update(ignore=["re:.*q_proj$"]), "not the rest of fused layer"),
])
def test_malformed_compressed_tensors_config_names_the_problem(tmp_path, edit, message):
    path = _edit_config(_quantized(tmp_path, "ct-channel"), edit)
    with pytest.raises(ValueError, match=message):
        load_model(ModelConfig(path))


def test_flag_that_contradicts_the_checkpoint_is_refused(tmp_path):
    path = _quantized(tmp_path, "ct-channel")
    with pytest.raises(ValueError, match="quantized with 'compressed-tensors'; drop the flag"):
        load_model(ModelConfig(path), quantization="fp8")
    with pytest.raises(ValueError, match="needs a checkpoint whose config.json has a compressed-tensors"):
        load_model(ModelConfig(tiny_model_dir("llama")), quantization="compressed-tensors")


def test_float_weights_under_an_fp8_config_and_bad_scale_shapes_are_refused(tmp_path):
    path = _quantized(tmp_path, "ct-channel")
    tensors = load_file(os.path.join(path, "model.safetensors"))
    name = "model.layers.0.self_attn.k_proj"
    for key, value, message in [
        (name + ".weight", tensors[name + ".weight"].float(), "must be float8_e4m3fn in the checkpoint, got float32"),
        (name + ".weight_scale", tensors[name + ".weight_scale"][:-1], r"one value per output row \(32\)"),
        (name + ".weight", tensors[name + ".weight"][:, :-1], r"shape mismatch .* \(32, 63\)"),
    ]:
        broken = dict(tensors, **{key: value.contiguous()})
        save_file(broken, os.path.join(path, "model.safetensors"))
        with pytest.raises(ValueError, match=f"cannot load checkpoint tensor '{key}'.*{message}"):
            load_model(ModelConfig(path))


@pytest.mark.parametrize("block", [(32, 32), (128, 128), (16, 64)])  # transformers refuses ragged grids
def test_block_weights_match_transformers_dequantization(tmp_path, block):
    """transformers loads block-wise `fp8` checkpoints on a CPU by dequantizing them: its float
    weights must be ours (a third reading of the format, beside the builder's)."""
    from transformers import AutoModelForCausalLM

    from sglang.runtime.layers.quantization.fp8_math import dequantize

    path = _quantized(tmp_path, "fp8-block", block=block)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ours = load_model(ModelConfig(path))
    hf_params = dict(hf.named_parameters())
    for name, layer in ours.named_modules():
        if not isinstance(layer, LinearBase):
            continue
        w = dequantize(layer.weight, layer.weight_scale_inv, block[1])
        parts = layer_checkpoint_names(ours, name)
        want = torch.cat([hf_params[p + ".weight"].detach().float() for p in parts])
        assert hf_params[parts[0] + ".weight"].dtype != torch.float8_e4m3fn
        torch.testing.assert_close(w, want, atol=0, rtol=2 ** -8)  # transformers may round through bf16
