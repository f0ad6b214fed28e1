"""Block-wise FP8 MoE checkpoints (Qwen3-MoE-FP8 / DeepSeek-V3 layout: every expert projection
float8 with a `weight_scale_inv` grid): the experts are staged in FP8 while loading and dequantized
once, so logits equal float32 math on the dequantized checkpoint (dense linears as FP8 GEMMs, the
experts in float); FP8 experts without block scales are refused naming the fix."""

from __future__ import annotations

import json
import os

import pytest
import torch

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.tiny_quantized import write_quantized
from tests.quantization.helpers import fp8_per_token, logits, round_inputs


def _reference(path: str, group: int) -> torch.Tensor:
    mc = ModelConfig(os.path.join(path, "dequantized"))
    ref = load_model(mc)
    round_inputs(ref, lambda name, x: fp8_per_token(x, group))
    return logits(ref, mc)


@pytest.mark.parametrize("arch,block", [("qwen3_moe", (16, 32)), ("qwen3_moe", (128, 128)), ("deepseek_v3", (16, 32))])
def test_fp8_block_experts_equal_dequantized_float_math(tmp_path, arch, block):
    path = write_quantized(tiny_model_dir(arch), str(tmp_path / arch), "fp8-block", block=block)
    stored = json.load(open(os.path.join(path, "model.safetensors.index.json")))["weight_map"] if os.path.exists(
        os.path.join(path, "model.safetensors.index.json")) else None
    del stored  # the writer's layout is its own business; the loader must take it as published
    mc = ModelConfig(path)
    model = load_model(mc)
    experts = [m for m in model.modules() if hasattr(m, "w13_weight")]
    assert experts and all(m.w13_weight.dtype == torch.float32 and m.fp8_block is None for m in experts)
    assert not any("scale_inv" in n for m in experts for n, _ in m.named_parameters())
    torch.testing.assert_close(logits(model, mc), _reference(path, block[1]), atol=1e-4, rtol=1e-4)


def test_fp8_experts_without_block_scales_are_refused(tmp_path):
    path = write_quantized(tiny_model_dir("qwen3_moe"), str(tmp_path / "t"), "fp8-tensor")
    with pytest.raises(ValueError, match="block-wise scales"):
        load_model(ModelConfig(path))


def test_online_fp8_serves_deepseek_with_its_absorbed_projection_in_float():
    """Online FP8 quantizes DeepSeek's linears but not kv_b_proj, whose weight MLA reads directly."""
    mc = ModelConfig(tiny_model_dir("deepseek_v2"))
    model = load_model(mc, quantization="fp8")
    attn = model.model.layers[0].self_attn
    assert attn.kv_b_proj.weight.dtype == torch.float32 and attn.o_proj.weight.dtype == torch.float8_e4m3fn
    assert torch.isfinite(logits(model, mc)).all()
