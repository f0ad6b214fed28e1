"""Mixture-of-experts families (Mixtral, Qwen-MoE, DeepSeek with latent attention) and Phi-3
through the whole Engine against transformers (CPU, float32): prompt log-probs, and greedy tokens
of 8 prompts submitted together == transformers one at a time (so a token's routing does not
depend on which requests share its batch)."""

from __future__ import annotations

import pytest

import sglang
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.hf_reference import hf_greedy, hf_prompt_logprobs
from tests.engine.prompts import prompt_ids

NEW_TOKENS = 12


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe", "qwen3_moe", "phi3", "deepseek_v2", "deepseek_v3"])
def test_moe_engine_matches_transformers(arch):
    path = tiny_model_dir(arch)
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:
        prompts = prompt_ids(engine.tokenizer, n=8)
        for ids in prompts[:2]:
            out = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 1}, return_logprob=True,
                                  logprob_start_len=0)
            ours = [e[0] for e in out["meta_info"]["input_token_logprobs"][1:]]
            ref = hf_prompt_logprobs(path, ids)
            assert len(ours) == len(ref)
            assert max(abs(a - b) for a, b in zip(ours, ref)) < 1e-4
        outs = engine.generate(input_ids=prompts, sampling_params={"max_new_tokens": NEW_TOKENS, "temperature": 0,
                                                                   "ignore_eos": True})
    assert [o["output_ids"] for o in outs] == hf_greedy(path, prompts, NEW_TOKENS)
