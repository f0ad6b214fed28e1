"""The CPU small-op kernels at model level: a tiny model computes the same logits (to float32
summation order) and the same greedy tokens with the kernels switched on as on the torch path,
and the switch lands on exactly the layers it should (never Gemma's (1 + w) norms), through the
harness, the ModelRunner (`--disable-cpu-kernels`, SGLANG_DISABLE_CPU_KERNELS=1) and the Engine.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, List, Tuple

import pytest
import torch

import sglang
from sglang.kernels.cpu.build import load_cpu_extension
from sglang.runtime.layers.activation import SiluAndMul
from sglang.runtime.layers.cpu_kernels import apply_cpu_kernels
from sglang.runtime.layers.layernorm import GemmaRMSNorm, RMSNorm
from sglang.runtime.layers.rotary_embedding import RotaryEmbedding
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_model_dir
from tests.engine.prompts import prompt_ids
from tests.models.harness import KVHarness

LOGIT_ATOL = 1e-4
PROMPT_LENS = (5, 12, 23)  # the windowed variants use a window of 8: decode really slides
DECODE_STEPS = 6
ALL_KINDS = ["RMSNorm", "RotaryEmbedding", "SiluAndMul", "decode attention", "decode steps"]
VARIANTS = {
    "llama": ("llama", {}, ALL_KINDS),
    "mistral-sliding": ("mistral", {"sliding_window": 8}, ALL_KINDS),
    "qwen2-sliding": ("qwen2", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}, ALL_KINDS),
    # (1 + w) norms and GELU stay on torch; rotary and the soft-capped windowed attention switch.
    "gemma2": ("gemma2", {}, ["RotaryEmbedding", "decode attention"]),
}
SWITCHABLE = (RMSNorm, SiluAndMul, RotaryEmbedding)


class _CountingOps:
    """Stands in for the kernels module and counts the calls that reach each kernel."""

    def __init__(self, ops: Any):
        self._ops, self.calls = ops, Counter()

    def __getattr__(self, name: str):
        fn = getattr(self._ops, name)

        def call(*args, **kwargs):
            self.calls[name] += 1
            return fn(*args, **kwargs)

        return call


def _switched(model: torch.nn.Module) -> List[torch.nn.Module]:
    return [m for m in model.modules() if getattr(m, "cpu_ops", None) is not None]


def _greedy_run(path: str, kernels: bool) -> Tuple[List[torch.Tensor], List[List[int]], Counter]:
    """Logits of one batched prefill and DECODE_STEPS batched greedy decode steps."""
    mc = ModelConfig(path)
    model = load_model(mc)
    h = KVHarness.for_config(model, mc)
    counter = _CountingOps(None)
    if kernels:
        apply_cpu_kernels(model, h.backend)
        counter = _CountingOps(h.backend.cpu_ops)
        for module in _switched(model) + [h.backend]:
            module.cpu_ops = counter
    gen = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, mc.vocab_size, (n,), generator=gen).tolist() for n in PROMPT_LENS]
    rows = [h.new_request() for _ in prompts]
    logits = [h.extend(rows, prompts).next_token_logits]
    tokens = [logits[-1].argmax(-1).tolist()]
    for _ in range(DECODE_STEPS):
        logits.append(h.decode(rows, tokens[-1]).next_token_logits)
        tokens.append(logits[-1].argmax(-1).tolist())
    return logits, tokens, counter.calls


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_apply_cpu_kernels_switches_exactly_the_plain_layers(cpu_ext, variant):
    arch, overrides, kinds = VARIANTS[variant]
    mc = ModelConfig(tiny_model_dir(arch, **overrides))
    model = load_model(mc)
    backend = KVHarness.for_config(model, mc).backend
    assert apply_cpu_kernels(model, backend) == kinds
    assert backend.cpu_ops is cpu_ext
    for module in model.modules():
        expected = type(module) in (RMSNorm, SiluAndMul, RotaryEmbedding)
        assert (getattr(module, "cpu_ops", None) is cpu_ext) == expected, type(module).__name__
    gemma_norms = [m for m in model.modules() if isinstance(m, GemmaRMSNorm)]
    assert bool(gemma_norms) == (arch == "gemma2")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_kernels_match_the_torch_path(cpu_ext, variant):
    arch, overrides, kinds = VARIANTS[variant]
    path = tiny_model_dir(arch, **overrides)
    want_logits, want_tokens, _ = _greedy_run(path, kernels=False)
    got_logits, got_tokens, calls = _greedy_run(path, kernels=True)
    assert got_tokens == want_tokens
    for step, (got, want) in enumerate(zip(got_logits, want_logits)):
        diff = (got - want).abs().max().item()
        assert diff < LOGIT_ATOL, f"step {step}: logits differ by {diff}"
    # The kernels really ran: decode attention once per layer and step, the others per their layers.
    layers = ModelConfig(path).num_hidden_layers
    assert calls["decode_attention"] == layers * DECODE_STEPS
    assert calls["rope_store_kv"] == layers * (DECODE_STEPS + 1)
    assert bool(calls["rms_norm"]) == ("RMSNorm" in kinds)
    assert bool(calls["silu_and_mul"]) == ("SiluAndMul" in kinds)


def _runner(path: str, **kwargs: Any) -> ModelRunner:
    return ModelRunner(ServerArgs(model_path=path, device="cpu", dtype="float32", **kwargs))


def test_model_runner_switches_on_by_default_and_off_with_the_flag(cpu_ext):
    path = tiny_model_dir("llama")
    on = _runner(path)
    assert on.attn_backend.cpu_ops is cpu_ext
    assert {type(m) for m in _switched(on.model)} == set(SWITCHABLE)
    off = _runner(path, disable_cpu_kernels=True)
    assert off.attn_backend.cpu_ops is None and not _switched(off.model)


def test_env_var_keeps_every_layer_on_torch(cpu_ext, monkeypatch):
    monkeypatch.setenv("SGLANG_DISABLE_CPU_KERNELS", "1")
    load_cpu_extension.cache_clear()  # the module is cached per process; look at the variable again
    try:
        runner = _runner(tiny_model_dir("llama"))
        assert runner.attn_backend.cpu_ops is None and not _switched(runner.model)
        assert apply_cpu_kernels(runner.model, runner.attn_backend) == []
    finally:
        load_cpu_extension.cache_clear()


def test_engine_greedy_output_is_the_same_with_and_without_kernels(cpu_ext):
    path = tiny_model_dir("mistral", sliding_window=8)
    params = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
    results = []
    for disable in (False, True):
        with sglang.Engine(model_path=path, device="cpu", dtype="float32", disable_cpu_kernels=disable) as engine:
            prompts = prompt_ids(engine.tokenizer, n=4)
            results.append(engine.generate(input_ids=prompts, sampling_params=params, return_logprob=True))
    on, off = results
    assert [o["output_ids"] for o in on] == [o["output_ids"] for o in off]
    for a, b in zip(on, off):
        got = [e[0] for e in a["meta_info"]["output_token_logprobs"]]
        want = [e[0] for e in b["meta_info"]["output_token_logprobs"]]
        assert max(abs(x - y) for x, y in zip(got, want)) < LOGIT_ATOL
