"""The transformers fallback through the whole Engine (scheduler, radix cache, chunked prefill,
continuous batching) on architectures we do not implement, against transformers (CPU, float32)."""

from __future__ import annotations

import pytest

import sglang
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.hf_reference import hf_greedy, hf_prompt_logprobs
from sglang.testing.tiny_foreign import foreign_model_dir
from tests.engine.prompts import prompt_ids

NEW_TOKENS = 12
GREEDY = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}


def _prompt_logprobs(engine, ids):
    out = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 1}, return_logprob=True,
                          logprob_start_len=0)
    return [e[0] for e in out["meta_info"]["input_token_logprobs"][1:]]


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_engine_fallback_matches_transformers(arch):
    path = foreign_model_dir(arch)
    # Chunks of 16 tokens: the longer prompts prefill in several passes over the paged cache.
    with sglang.Engine(model_path=path, device="cpu", dtype="float32", chunked_prefill_size=16) as engine:
        prompts = prompt_ids(engine.tokenizer, n=8)
        for ids in prompts[:3]:
            ours, ref = _prompt_logprobs(engine, ids), hf_prompt_logprobs(path, ids)
            assert len(ours) == len(ref) and max(abs(a - b) for a, b in zip(ours, ref)) < 1e-4
        alone = [engine.generate(input_ids=ids, sampling_params=GREEDY)["output_ids"] for ids in prompts]
        together = engine.generate(input_ids=prompts, sampling_params=GREEDY)
        # Prompt 6 extends prompt 0's text: after the runs above its prefix comes from the radix cache.
        assert together[6]["meta_info"]["cached_tokens"] > 0
    assert [o["output_ids"] for o in together] == alone == hf_greedy(path, prompts, NEW_TOKENS)


def test_engine_forced_fallback_llama_equals_native():
    path = tiny_model_dir("llama")
    runs = {}
    for impl in ("sglang", "transformers"):
        with sglang.Engine(model_path=path, device="cpu", dtype="float32", model_impl=impl) as engine:
            prompts = prompt_ids(engine.tokenizer, n=6)
            runs[impl] = ([_prompt_logprobs(engine, ids) for ids in prompts[:2]],
                          [o["output_ids"] for o in engine.generate(input_ids=prompts, sampling_params=GREEDY)])
    (lp_a, out_a), (lp_b, out_b) = runs["sglang"], runs["transformers"]
    assert out_a == out_b
    assert max(abs(a - b) for xs, ys in zip(lp_a, lp_b) for a, b in zip(xs, ys)) < 1e-4


def test_engine_fallback_as_embedding_model():
    """--is-embedding pools the fallback's backbone like any causal LM we serve (default: last
    token, L2-normalized) == transformers' final hidden state of the last token."""
    import torch
    from transformers import AutoModel

    path = foreign_model_dir("gpt2")
    prompts = [[5, 17, 300, 42], [9, 8, 7, 6, 5, 4, 3, 2, 1, 11, 12], [700]]
    with sglang.Engine(model_path=path, device="cpu", dtype="float32", is_embedding=True) as engine:
        got = [torch.tensor(o["embedding"]) for o in engine.encode(input_ids=prompts)]
    hf = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    for ids, ours in zip(prompts, got):
        with torch.inference_mode():
            ref = torch.nn.functional.normalize(hf(torch.tensor([ids])).last_hidden_state[0, -1], dim=-1)
        assert torch.nn.functional.cosine_similarity(ours, ref, dim=0).item() >= 0.99999
