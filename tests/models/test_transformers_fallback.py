"""The transformers fallback (--model-impl transformers) against transformers' own forward, and
against our native Llama, on tiny random checkpoints (float32, CPU), over our paged KV cache:
a batched extend mixing fresh prompts with requests whose prefix is cached, batched ragged decode,
and a MIXED chunked-prefill batch."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.models.transformers_fallback.model import TransformersForCausalLM
from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.tiny_foreign import foreign_model_dir
from tests.models.harness import (
    KVHarness,
    hf_incremental_logprobs,
    hf_prompt_logprobs,
    hf_reference_model,
    logprobs,
)

TOL = 1e-4
PROMPT_LENS = (5, 12, 23, 37)
SPLITS = (None, 4, None, 20)  # where a request's prompt is cut into two extend passes
DECODE_STEPS = 4


def _prompts(vocab: int, seed: int = 1) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]


def _run_paged(model, mc, prompts, new_tokens):
    """(prompt log-probs per request, [request][step] decode log-probs) through the KV harness."""
    h = KVHarness.for_config(model, mc)
    rows = [h.new_request() for _ in prompts]
    first = [i for i, s in enumerate(SPLITS) if s]
    out1 = h.extend([rows[i] for i in first], [prompts[i][: SPLITS[i]] for i in first], return_logprob=True)
    got = {i: [p] for i, p in zip(first, torch.split(out1.input_logits, [SPLITS[i] for i in first]))}
    chunks = [p[s:] if s else p for p, s in zip(prompts, SPLITS)]
    out2 = h.extend(rows, chunks, return_logprob=True)
    for i, part in enumerate(torch.split(out2.input_logits, [len(c) for c in chunks])):
        got.setdefault(i, []).append(part)
    prompt_lp = [logprobs(torch.cat(got[i])) for i in range(len(prompts))]
    steps = [logprobs(h.decode(rows, [toks[t] for toks in new_tokens]).next_token_logits)
             for t in range(DECODE_STEPS)]
    return prompt_lp, [torch.stack([s[i] for s in steps]) for i in range(len(prompts))]


FOREIGN = {
    "gpt2": ("gpt2", {}),
    # per-layer softmax scale (1 / (layer + 1) on top of 1/sqrt(d)) reaches the bridge per call
    "gpt2-layer-scaled": ("gpt2", {"scale_attn_by_inverse_layer_idx": True}),
    "opt": ("opt", {}),
}


@pytest.fixture(scope="module", params=sorted(FOREIGN))
def foreign(request):
    arch, overrides = FOREIGN[request.param]
    path = foreign_model_dir(arch, **overrides)
    mc = ModelConfig(path)
    return load_model(mc), hf_reference_model(path), mc


def test_unimplemented_architecture_takes_the_fallback(foreign):
    model, _, mc = foreign
    assert mc.model_impl == "transformers" and isinstance(model, TransformersForCausalLM)


def test_fallback_matches_transformers_prefill_and_decode(foreign):
    model, hf, mc = foreign
    prompts = _prompts(mc.vocab_size)
    new_tokens = torch.randint(0, mc.vocab_size, (len(prompts), DECODE_STEPS),
                               generator=torch.Generator().manual_seed(2)).tolist()
    prompt_lp, decode_lp = _run_paged(model, mc, prompts, new_tokens)
    for i, prompt in enumerate(prompts):
        ref = hf_prompt_logprobs(hf, prompt)
        assert (prompt_lp[i] - ref).abs().max().item() < TOL, f"prompt of request {i} differs from HF"
        ref = hf_incremental_logprobs(hf, prompt, new_tokens[i])
        assert (decode_lp[i] - ref).abs().max().item() < TOL, f"decode of request {i} differs from HF"


def test_fallback_mixed_chunked_prefill_batch(foreign):
    model, hf, mc = foreign
    prompts = _prompts(mc.vocab_size, seed=3)
    h = KVHarness.for_config(model, mc)
    rows = [h.new_request() for _ in prompts]
    h.extend([rows[0], rows[2]], [prompts[0][:-1], prompts[2][:-1]])  # "running" requests
    h.extend([rows[3]], [prompts[3][:10]])  # mid chunked prefill
    out = h.extend(rows, [prompts[0][-1:], prompts[1], prompts[2][-1:], prompts[3][10:]], mode=ForwardMode.MIXED)
    for i, prompt in enumerate(prompts):
        ref = hf_prompt_logprobs(hf, prompt)[-1]
        assert (logprobs(out.next_token_logits[i]) - ref).abs().max().item() < TOL, f"request {i}"


# Mistral: windowed layers (the bridge gets `sliding_window` per call); Gemma 2: attention
# soft-capping, a non-default softmax scale, alternating windows and final logit soft-capping.
NATIVE = {"llama": ("llama", {}), "mistral-sliding": ("mistral", {"sliding_window": 8}), "gemma2": ("gemma2", {})}


@pytest.mark.parametrize("variant", sorted(NATIVE))
def test_forced_fallback_equals_native(variant):
    arch, overrides = NATIVE[variant]
    path = tiny_model_dir(arch, **overrides)
    native_mc, fallback_mc = ModelConfig(path), ModelConfig(path, model_impl="transformers")
    assert (native_mc.model_impl, fallback_mc.model_impl) == ("sglang", "transformers")
    native, fallback = load_model(native_mc), load_model(fallback_mc)
    assert isinstance(fallback, TransformersForCausalLM)
    prompts = _prompts(native_mc.vocab_size, seed=5)
    new_tokens = torch.randint(0, native_mc.vocab_size, (len(prompts), DECODE_STEPS),
                               generator=torch.Generator().manual_seed(6)).tolist()
    ours = _run_paged(native, native_mc, prompts, new_tokens)
    theirs = _run_paged(fallback, fallback_mc, prompts, new_tokens)
    for a, b in zip(ours[0] + ours[1], theirs[0] + theirs[1]):
        assert (a - b).abs().max().item() < TOL


# ------------------------------------------------------------------ choosing and refusing


def test_model_impl_sglang_on_unknown_architecture_names_it_and_the_flag():
    with pytest.raises(ValueError, match=r"'GPT2LMHeadModel'.*--model-impl transformers"):
        ModelConfig(foreign_model_dir("gpt2"), model_impl="sglang")
    with pytest.raises(ValueError, match="model_impl must be one of"):
        ServerArgs(model_path=foreign_model_dir("gpt2"), model_impl="hf")


def _edited(tmp_path, src: str, **fields) -> str:
    path = str(tmp_path / "ckpt")
    shutil.copytree(src, path)
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.update(fields)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    return path


@pytest.mark.parametrize("fields, expected", [
    ({"add_cross_attention": True}, "cross-attention"),
    ({"architectures": ["NoSuchForCausalLM"]}, "'NoSuchForCausalLM' is not supported.*no causal-LM class"),
])
def test_fallback_refuses_what_it_cannot_serve(tmp_path, fields, expected):
    path = _edited(tmp_path, foreign_model_dir("gpt2"), **fields)
    with pytest.raises(ValueError, match=expected):
        ModelConfig(path)


def test_alibi_models_are_refused_clearly():
    from transformers import BloomConfig, FalconConfig

    from sglang.runtime.models.transformers_fallback.select import fallback_refusal

    assert "ALiBi" in fallback_refusal("BloomForCausalLM", BloomConfig())
    assert "ALiBi" in fallback_refusal("FalconForCausalLM", FalconConfig(alibi=True))
    # Falcon without ALiBi: transformers' Falcon does its own attention, so still refused.
    assert "attention-interface" in fallback_refusal("FalconForCausalLM", FalconConfig())


def test_fallback_refuses_quantization_and_tensor_parallel():
    from sglang.runtime.distributed.tensor_parallel import TensorParallel

    mc = ModelConfig(foreign_model_dir("gpt2"))
    with pytest.raises(ValueError, match="--quantization fp8 is not supported by the transformers fallback"):
        load_model(mc, quantization="fp8")
    with pytest.raises(ValueError, match="--tp-size 2 is not supported by the transformers fallback"):
        load_model(mc, tp=TensorParallel(0, 2, None))


def test_fallback_refuses_gguf_checkpoints():
    from sglang.testing.fixtures import tiny_gguf_path

    mc = ModelConfig(tiny_gguf_path("llama"), model_impl="transformers")
    with pytest.raises(ValueError, match="GGUF checkpoint cannot run on the transformers fallback"):
        load_model(mc)
