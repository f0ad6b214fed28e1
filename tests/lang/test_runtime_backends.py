"""RuntimeEndpoint (over a `Runtime` subprocess) and EngineBackend against the tiny llama.

One server and one engine are shared by the whole module; backend tests run on both.
Select scores are checked against transformers' logprobs of prompt + choice scored alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest

from sglang.lang.backend import get_backend_class
from sglang.lang.backend.base_backend import Prompt
from sglang.lang.backend.engine_backend import EngineBackend
from sglang.lang.backend.runtime import Runtime, server_cli_args
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint
from sglang.lang.backend.runtime_protocol import RuntimeBackendError, RuntimeProtocolBackend
from sglang.lang.choices import (
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)
from sglang.lang.image_io import ImageInput
from sglang.lang.ir import REGEX_INT, SglSamplingParams
from sglang.testing.hf_reference import hf_prompt_logprobs

GREEDY = SglSamplingParams(max_new_tokens=10, temperature=0.0)
TOL = 2e-4
# Small KV pools: a server and an engine run side by side on a small CPU box.


@pytest.fixture(params=["endpoint", "engine"])
def backend(request: pytest.FixtureRequest) -> RuntimeProtocolBackend:
    if request.param == "endpoint":
        return request.getfixturevalue("runtime").endpoint
    return request.getfixturevalue("engine_backend")


def _reference(model_path: str, backend: RuntimeProtocolBackend, prompt: str, choice: str):
    """(choice token ids, their logprobs given the prompt) by scoring prompt + choice alone."""
    p_ids, f_ids = backend.transport.tokenize([prompt, prompt + choice])
    start = next((i for i, (a, b) in enumerate(zip(p_ids, f_ids)) if a != b), min(len(p_ids), len(f_ids)))
    return f_ids[start:], hf_prompt_logprobs(model_path, f_ids)[start - 1:], start, len(p_ids)


def _floats(entries) -> list[float]:
    return [e[0] for e in entries]


# ---------------------------------------------------------------------------------- generation
def test_generate_and_stream_deltas_concatenate(backend):
    prompt = Prompt("Once upon a time")
    full = backend.generate(prompt, GREEDY)
    assert full.meta_info["completion_tokens"] == 10 and full.texts is None
    assert full.meta_info["prompt_tokens"] > 0 and "cached_tokens" in full.meta_info
    pieces = list(backend.generate_stream(prompt, GREEDY))
    assert len(pieces) > 1
    assert "".join(d for d, _ in pieces) == full.text
    assert pieces[-1][1]["finish_reason"] == full.meta_info["finish_reason"]


def test_n_samples(backend):
    out = backend.generate(Prompt("The cat"), SglSamplingParams(max_new_tokens=4, temperature=1.0, n=3,
                                                                seed=1))
    assert len(out.texts) == 3 and out.text == out.texts[0]
    assert len(out.meta_info["n_meta_info"]) == 3


def test_regex_generation(backend):
    out = backend.generate(Prompt("Number: "), SglSamplingParams(max_new_tokens=8, temperature=0.0,
                                                                 regex=REGEX_INT))
    int(out.text)
    out = backend.generate(Prompt("Answer: "), SglSamplingParams(max_new_tokens=8, regex="(yes|no)"))
    assert out.text in ("yes", "no")


def test_logprob_args_pass_through(backend):
    params = SglSamplingParams(max_new_tokens=3, temperature=0.0, return_logprob=True, top_logprobs_num=2)
    meta = backend.generate(Prompt("Hello"), params).meta_info
    assert len(meta["output_token_logprobs"]) == 3 and len(meta["output_top_logprobs"][0]) == 2


def test_leading_bos_text_is_not_doubled(backend):
    meta = backend.generate(Prompt("<|begin_of_text|>Hello"), SglSamplingParams(max_new_tokens=1)).meta_info
    assert meta["prompt_tokens"] == len(backend.transport.tokenize(["Hello"])[0])


# ---------------------------------------------------------------------------------- select
@pytest.mark.parametrize("prompt,choices", [
    ("The answer is ", ["yes", " yes", "no", "maybe not"]),  # token healing: " " merges into "Ġy"
    ("Q: Is the sky blue?\nA:", [" Yes", " No", "Yes"]),
])
def test_select_scores_equal_independent_scoring(backend, model_path, prompt, choices):
    decision = backend.select(Prompt(prompt), choices, 0.0, token_length_normalized)
    means = []
    for i, choice in enumerate(choices):
        ids, ref, start, prompt_len = _reference(model_path, backend, prompt, choice)
        got = decision.meta_info["input_token_logprobs"][i]
        assert [e[1] for e in got] == ids
        assert max(abs(a - b) for a, b in zip(_floats(got), ref)) < TOL
        assert len(got) == len(ref)
        means.append(sum(ref) / len(ref))
    assert decision.decision == choices[max(range(len(means)), key=means.__getitem__)]
    assert decision.meta_info["prompt_tokens"] > 0 and decision.meta_info["num_scoring_requests"] == len(choices)


def test_token_healing_moves_the_choice_start(backend, model_path):
    _, _, start, prompt_len = _reference(model_path, backend, "The answer is ", "yes")
    assert start == prompt_len - 1  # the trailing-space token is re-scored as part of "Ġy"


def test_greedy_token_selection(backend):
    decision = backend.select(Prompt("The answer is "), ["yes", "no"], 0.0, greedy_token_selection)
    first = [lps[0][0] for lps in decision.meta_info["input_token_logprobs"]]
    assert decision.decision == ["yes", "no"][0 if first[0] >= first[1] else 1]


def test_unconditional_likelihood_normalized(backend, model_path):
    prompt, choices = "The answer is ", ["yes", "no", "maybe not"]
    decision = backend.select(Prompt(prompt), choices, 0.0, unconditional_likelihood_normalized)
    bos = backend.transport.special_token_id("<|begin_of_text|>")
    scores = []
    for i, choice in enumerate(choices):
        ids, ref, _, _ = _reference(model_path, backend, prompt, choice)
        uncond = decision.meta_info["unconditional_token_logprobs"][i]
        ref_u = hf_prompt_logprobs(model_path, [bos] + ids)
        assert [e[1] for e in uncond] == ids and len(uncond) == len(ids)
        assert max(abs(a - b) for a, b in zip(_floats(uncond), ref_u)) < TOL
        scores.append(sum(a - b for a, b in zip(ref, ref_u)) / len(ids))
    assert decision.decision == choices[max(range(len(scores)), key=scores.__getitem__)]
    assert decision.meta_info["num_scoring_requests"] == 2 * len(choices)


def test_select_batch_shares_the_prompt_prefix(runtime):
    ep = runtime.endpoint
    assert ep.flush_cache()
    prompt = Prompt("Here is a long question about the weather in the mountains, the rivers, "
                    "the lakes and the forests near the old town by the sea. Is it going to rain "
                    "tomorrow morning? Answer:")
    n_prompt = len(ep.transport.tokenize([prompt.text])[0])
    assert n_prompt > 40
    decision = ep.select(prompt, [" yes", " no", " maybe", " never"], 0.0, token_length_normalized)
    # The first choice computes the prompt; the others are deferred a step and hit the cache.
    assert decision.meta_info["cached_tokens"] >= 3 * 32


def test_select_with_empty_choice(backend):
    decision = backend.select(Prompt("Hi"), ["", " there"], 0.0, token_length_normalized)
    assert decision.decision == " there"
    assert decision.meta_info["input_token_logprobs"][0] == []


# ---------------------------------------------------------------------------------- cache
def test_cache_prefix_then_generate_hits_the_cache(backend):
    assert backend.flush_cache()
    prefix = "A long shared system prompt that many requests start with, about cats and dogs."
    backend.cache_prefix(Prompt(prefix))
    n_prefix = len(backend.transport.tokenize([prefix])[0])
    meta = backend.generate(Prompt(prefix + " Now tell"), SglSamplingParams(max_new_tokens=1)).meta_info
    assert meta["cached_tokens"] >= n_prefix - 1


def test_concatenate_and_append(backend):
    parent = "Once upon a time"
    children = [parent + " there was a king", parent + " in a land far away"]
    for child in children:
        backend.generate(Prompt(child), SglSamplingParams(max_new_tokens=0))
    out = backend.concatenate_and_append(Prompt(parent), [Prompt(c) for c in children])
    assert {"input_ids", "num_tokens", "copied_tokens", "cached_prefix_tokens"} <= set(out)
    assert out["num_tokens"] == len(out["input_ids"]) > len(backend.transport.tokenize([parent])[0])


def test_server_info_and_flush(backend):
    assert "max_total_num_tokens" in backend.get_server_info()
    assert backend.flush_cache() is True


# ---------------------------------------------------------------------------------- errors
def test_images_give_a_clear_error(backend):
    prompt = Prompt("Describe:", images=[ImageInput(b"\x89PNG\r\n", "image/png")])
    with pytest.raises(RuntimeBackendError, match="does not accept images"):
        backend.generate(prompt, GREEDY)
    with pytest.raises(RuntimeBackendError, match="does not accept images"):
        backend.select(prompt, ["a", "b"], 0.0, token_length_normalized)


def test_server_error_message_surfaces(backend):
    with pytest.raises(RuntimeBackendError, match="max_new_tokens must be >= 0"):
        backend.generate(Prompt("Hi"), SglSamplingParams(max_new_tokens=-1))
    with pytest.raises(RuntimeBackendError, match="max_new_tokens must be >= 0"):
        list(backend.generate_stream(Prompt("Hi"), SglSamplingParams(max_new_tokens=-1)))


def test_http_error_carries_status(runtime):
    with pytest.raises(RuntimeBackendError) as info:
        runtime.endpoint.generate(Prompt("Hi"), SglSamplingParams(top_p=2.0))
    assert info.value.status_code == 400 and "top_p" in str(info.value)


# ---------------------------------------------------------------------------------- chat template
def test_chat_template_from_model_info(runtime, model_path):
    template = runtime.get_chat_template()
    assert template.role_prefix_and_suffix["user"] == ("<|start_header_id|>user<|end_header_id|>\n\n",
                                                        "<|eot_id|>")
    named = RuntimeEndpoint(runtime.url, chat_template_name="chatml")
    try:
        assert named.get_chat_template().role_prefix_and_suffix["user"][0] == "<|im_start|>user\n"
    finally:
        named.shutdown()


# ---------------------------------------------------------------------------------- Runtime
def test_runtime_is_a_backend_and_upstream_conveniences(runtime):
    assert runtime.has("select_exact") and not runtime.is_chat_model
    assert runtime.generate(Prompt("Hi"), GREEDY).text == runtime.endpoint.generate(Prompt("Hi"), GREEDY).text
    raw = json.loads(runtime.generate("Hello", {"max_new_tokens": 6, "temperature": 0}))
    assert raw["meta_info"]["completion_tokens"] == 6

    async def pieces() -> list[str]:
        return [p async for p in runtime.async_generate("Hello", {"max_new_tokens": 6, "temperature": 0})]

    assert "".join(asyncio.run(pieces())) == raw["text"]


def test_server_cli_args_validation():
    assert server_cli_args({"model_path": "m", "device": "cpu", "enable_metrics": True,
                            "disable_radix_cache": False, "context_length": None}) == [
        "--model-path", "m", "--device", "cpu", "--enable-metrics"]
    with pytest.raises(TypeError, match="bogus_flag, other_bad"):
        server_cli_args({"model_path": "m", "bogus_flag": 1, "other_bad": 2})
    with pytest.raises(TypeError, match="bogus"):
        Runtime(model_path="m", bogus=1)


def test_runtime_startup_failure_shows_the_log(model_path):
    # A value only the server rejects (fast: it fails while parsing its arguments).
    with pytest.raises(RuntimeError, match="exited with code") as info:
        Runtime(model_path=model_path, device="cpu", tp_size=0)
    message = str(info.value)
    assert "log tail" in message and "tp-size" in message
    log_path = re.search(r"log tail \((.+?\.log)\)", message).group(1)
    os.remove(log_path)  # kept on failure for the user; the test cleans up


def test_api_key_is_sent_as_bearer():
    ep = RuntimeEndpoint("http://127.0.0.1:1", api_key="secret")
    try:
        assert ep.transport.client.headers["Authorization"] == "Bearer secret"
        with pytest.raises(RuntimeBackendError, match="cannot reach"):
            ep.flush_cache()
    finally:
        ep.shutdown()


def test_registry():
    assert get_backend_class("runtime_endpoint") is RuntimeEndpoint
    assert get_backend_class("engine") is EngineBackend
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend_class("nope")
