"""Decode steps as direct kernel calls (`layers/cpu_decode_step.py`): bit-identical to the module
path on GGUF blocks and on float32 weights, with biases and sliding windows; planned only for
models whose every layer qualifies; extends and other dtypes keep the modules."""

from __future__ import annotations

from typing import List, Tuple

import pytest
import torch

from sglang.runtime.layers import cpu_decode_step
from sglang.runtime.layers.cpu_kernels import apply_cpu_kernels
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.fixtures import tiny_gguf_path, tiny_model_dir
from tests.models.harness import KVHarness

PROMPT_LENS = (5, 12, 23)
DECODE_STEPS = 5


def _model(case: str):
    if case == "mistral-sliding-float32":
        mc = ModelConfig(tiny_model_dir("mistral", sliding_window=8))
        return mc, load_model(mc)
    arch, qtype, *dtype = case.split("-")
    mc = ModelConfig(tiny_gguf_path(arch, qtype), dtype=dtype[0] if dtype else "auto")
    return mc, load_model(mc, quantization="gguf")


def _run(case: str, steps_on: bool, monkeypatch) -> Tuple[List[torch.Tensor], int]:
    """Every step's logits (a batched prefill, then greedy decodes) and how many layer steps ran."""
    mc, model = _model(case)
    h = KVHarness.for_config(model, mc)
    apply_cpu_kernels(model, h.backend)
    assert model.model.cpu_decode_steps is not None
    if not steps_on:
        model.model.cpu_decode_steps = None
    ran = [0]
    call = cpu_decode_step.CpuDecodeStep.__call__

    def counted(self, *args):
        ran[0] += 1
        return call(self, *args)

    monkeypatch.setattr(cpu_decode_step.CpuDecodeStep, "__call__", counted)
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, mc.vocab_size, (n,), generator=gen).tolist() for n in PROMPT_LENS]
    rows = [h.new_request() for _ in prompts]
    logits = [h.extend(rows, prompts).next_token_logits]
    for _ in range(DECODE_STEPS):
        logits.append(h.decode(rows, logits[-1].argmax(-1).tolist()).next_token_logits)
    return logits, ran[0]


@pytest.mark.parametrize("case", ["llama-Q4_1", "qwen2-Q8_0", "mistral-Q4_0", "mistral-sliding-float32"])
def test_decode_steps_are_bit_identical_to_the_modules(cpu_ext, case, monkeypatch):
    want, ran_off = _run(case, False, monkeypatch)
    got, ran_on = _run(case, True, monkeypatch)
    layers = len(_model(case)[1].model.layers)
    assert ran_off == 0 and ran_on == layers * DECODE_STEPS  # decodes only; the prefill kept the modules
    for step, (g, w) in enumerate(zip(got, want)):
        assert torch.equal(g, w), f"step {step} differs by {(g - w).abs().max().item()}"


@pytest.mark.parametrize("arch", ["qwen3", "gemma2"])
def test_models_with_other_layers_keep_the_modules(cpu_ext, arch):
    mc = ModelConfig(tiny_gguf_path(arch, "Q8_0"))
    model = load_model(mc, quantization="gguf")
    kinds = apply_cpu_kernels(model, KVHarness.for_config(model, mc).backend)
    assert model.model.cpu_decode_steps is None and "decode steps" not in kinds


def test_bfloat16_decodes_keep_the_modules(cpu_ext, monkeypatch):
    logits, ran = _run("llama-Q4_1-bfloat16", True, monkeypatch)
    assert ran == 0 and all(not torch.isnan(x).any() for x in logits)  # planned, but a bf16 batch is not served
