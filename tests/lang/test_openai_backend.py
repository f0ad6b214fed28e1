"""The OpenAI backend: pure helpers, then both modes against our own server (started once).

Chat mode goes through /v1/chat/completions, completion mode through /v1/completions; results
are checked against the native /generate route of the same server.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest

from sglang.lang.backend.base_backend import (
    CHAT_MESSAGES,
    CONSTRAINED,
    IMAGES,
    SELECT_EXACT,
    Prompt,
)
from sglang.lang.backend.openai_backend import OpenAI, OpenAIBackendError, infer_is_chat_model
from sglang.lang.backend.openai_params import request_kwargs
from sglang.lang.backend.openai_select import choice_entries, decide_top_logprobs, walk_choice
from sglang.lang.choices import (
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)
from sglang.lang.image_io import ImageInput
from sglang.lang.ir import SglSamplingParams
from sglang.testing.fixtures import tiny_model_dir
from sglang.lang.backend.runtime import Runtime

MODEL_NAME = "default"

GREEDY = SglSamplingParams(max_new_tokens=8, temperature=0.0)
PROMPT_TEXT = "The capital of France is"
CHAT_MESSAGES_ = [{"role": "user", "content": "What is the capital of France?"}]
TOL = 1e-4


# ------------------------------------------------------------------------------ pure helpers
@pytest.mark.parametrize("name,chat", [("gpt-4o", True), ("gpt-3.5-turbo-instruct", False),
                                       ("davinci-002", False), ("babbage-002", False),
                                       ("meta-llama/Llama-3.1-8B-Instruct", True)])
def test_infer_is_chat_model(name: str, chat: bool) -> None:
    assert infer_is_chat_model(name) is chat


def test_request_kwargs_mapping() -> None:
    params = SglSamplingParams(max_new_tokens=5, temperature=0.5, top_k=3, min_p=0.0, ignore_eos=False,
                               regex="[0-9]+", min_new_tokens=2, stop=["\n"], n=2)
    ours = request_kwargs(params, model="m", chat=True, official=False)
    assert ours["max_tokens"] == 5 and ours["n"] == 2 and ours["stop"] == ["\n"]
    assert ours["extra_body"] == {"top_k": 3, "regex": "[0-9]+", "min_tokens": 2}  # neutral values dropped
    with pytest.raises(ValueError, match="top_k"):
        request_kwargs(params, model="gpt-4o", chat=True, official=True)
    with pytest.raises(ValueError, match="regex"):
        request_kwargs(SglSamplingParams(regex="a"), model="gpt-4o", chat=True, official=True)
    with pytest.raises(ValueError, match="stop_regex"):
        request_kwargs(SglSamplingParams(stop_regex="x"), model="m", chat=True, official=False)
    official = request_kwargs(SglSamplingParams(max_new_tokens=4, json_schema='{"type": "object"}',
                                                top_k=-1, return_logprob=True, top_logprobs_num=2),
                              model="gpt-4o", chat=True, official=True)
    assert official["max_completion_tokens"] == 4 and "extra_body" not in official
    assert official["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert official["logprobs"] is True and official["top_logprobs"] == 2


def test_choice_entries_reanchor_and_token_healing() -> None:
    # Our server counts the BOS text in text_offset; the prompt text does not contain it.
    tokens = ["<s>", "Hi", " the", "re"]
    offsets = [0, 3, 5, 9]
    entries, exact = choice_entries(tokens, [None, -1.0, -2.0, -3.0], offsets, "Hi there", len("Hi t"))
    assert exact and [e[2] for e in entries] == [" the", "re"]  # " the" straddles the boundary
    entries, _ = choice_entries(tokens, [None, -1.0, -2.0, -3.0], offsets, "Hi there", len("Hi the"))
    assert [e[0] for e in entries] == [-3.0]


def test_walk_choice_follows_only_the_generated_path() -> None:
    positions = [("Par", -0.1, [("Par", -0.1), ("Lon", -2.0), (" Ber", -3.0)]),
                 ("is", -0.2, [("is", -0.2), ("k", -1.0)])]
    assert walk_choice("Paris", positions).covered == 5
    london = walk_choice("London", positions)
    assert london.covered == 3 and london.diverged_at == 0 and london.entries[0][0] == -2.0
    assert walk_choice("Berlin", positions).covered == 3  # leading space of the first token
    assert walk_choice("Park", positions).covered == 4  # "k" is a top candidate after "Par"
    decision = decide_top_logprobs(["London", "Park", "Paris", "Rome"], positions, token_length_normalized)
    assert decision.decision == "Paris" and decision.meta_info["coverage"][3] == 0.0
    nothing = decide_top_logprobs(["x", "y"], positions, token_length_normalized)
    assert nothing.decision == "x" and nothing.meta_info["observed"] is False
    with pytest.raises(ValueError, match="unconditional"):
        decide_top_logprobs(["Paris"], positions, unconditional_likelihood_normalized)


class _NoLogprobChat:
    """A stand-in client whose chat completions never carry logprobs."""

    def __init__(self) -> None:
        message = SimpleNamespace(content="Paris")
        choice = SimpleNamespace(index=0, message=message, logprobs=None, finish_reason="stop")
        reply = SimpleNamespace(id="x", choices=[choice], usage=None)
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=lambda **kw: reply))

    def close(self) -> None:
        pass


def test_offline_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAI("gpt-4o")
    chat = OpenAI("some-model", base_url="http://127.0.0.1:9/v1")  # no key needed off OpenAI
    assert chat.is_chat_model and {CHAT_MESSAGES, IMAGES, CONSTRAINED} <= chat.capabilities
    assert SELECT_EXACT not in chat.capabilities
    chat.client = _NoLogprobChat()
    prompt = Prompt(text="", messages=CHAT_MESSAGES_, cur_role="assistant")
    with pytest.raises(OpenAIBackendError, match="needs logprobs"):
        chat.select(prompt, ["Paris", "London"], 0.0, token_length_normalized)
    with pytest.raises(ValueError, match="assistant block"):
        chat.generate(Prompt(text="", messages=CHAT_MESSAGES_), GREEDY)
    text = OpenAI("davinci-002", base_url="http://127.0.0.1:9/v1")
    assert SELECT_EXACT in text.capabilities and IMAGES not in text.capabilities
    with pytest.raises(ValueError, match="images"):
        text.generate(Prompt(text="x", images=[ImageInput(b"\x89PNG")]), GREEDY)
    assert text.get_chat_template().name == "default" and text.flush_cache() is False


# ------------------------------------------------------------------------------ live server
@pytest.fixture(scope="module")
def server(runtime: Runtime) -> SimpleNamespace:
    return SimpleNamespace(base_url=runtime.url)  # the package's shared server


@pytest.fixture(scope="module")
def http(server: SimpleNamespace) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as client:
        yield client


@pytest.fixture(params=[True, False], ids=["chat", "completion"])
def backend(request: pytest.FixtureRequest, server: SimpleNamespace) -> Iterator[OpenAI]:
    b = OpenAI(MODEL_NAME, base_url=server.base_url + "/v1", is_chat_model=request.param, max_retries=0)
    yield b
    b.shutdown()


def _prompt(backend: OpenAI) -> Prompt:
    if backend.is_chat_model:
        return Prompt(text="", messages=list(CHAT_MESSAGES_), cur_role="assistant")
    return Prompt(text=PROMPT_TEXT)


def _native_ids(backend: OpenAI) -> dict[str, Any]:
    """The /generate input our server builds for the same prompt."""
    if not backend.is_chat_model:
        return {"text": PROMPT_TEXT}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    text = tok.apply_chat_template(CHAT_MESSAGES_, tokenize=False, add_generation_prompt=True)
    add_bos = not (tok.bos_token and text.startswith(tok.bos_token))
    return {"input_ids": list(tok.encode(text, add_special_tokens=add_bos))}


def test_generate_and_stream_match_native(backend: OpenAI, http: httpx.Client) -> None:
    body = {**_native_ids(backend), "sampling_params": {"max_new_tokens": 8, "temperature": 0}}
    native = http.post("/generate", json=body).json()
    result = backend.generate(_prompt(backend), GREEDY)
    assert result.text == native["text"] and result.texts is None
    meta = result.meta_info
    assert meta["prompt_tokens"] == native["meta_info"]["prompt_tokens"]
    assert meta["completion_tokens"] == native["meta_info"]["completion_tokens"]
    assert meta["finish_reason"]["type"] in ("length", "stop") and "cached_tokens" in meta
    pieces = list(backend.generate_stream(_prompt(backend), GREEDY))
    assert "".join(d for d, _ in pieces) == native["text"]
    final = pieces[-1][1]
    assert final["completion_tokens"] == meta["completion_tokens"] and final["finish_reason"] is not None
    assert backend.num_api_calls == 2


def test_n_regex_and_logprobs(backend: OpenAI) -> None:
    params = SglSamplingParams(max_new_tokens=6, temperature=1.0, n=3, regex="[0-9]{3}",
                               return_logprob=True, top_logprobs_num=2)
    result = backend.generate(_prompt(backend), params)
    assert result.texts is not None and len(result.texts) == 3 and result.text == result.texts[0]
    assert all(re.fullmatch("[0-9]{3}", t) for t in result.texts)
    entries = result.meta_info["output_token_logprobs"]
    assert entries and all(isinstance(e[0], float) for e in entries)
    assert all(len(top) <= 2 for top in result.meta_info["output_top_logprobs"])


def test_image_rejected_by_text_only_model(server: SimpleNamespace) -> None:
    chat = OpenAI(MODEL_NAME, base_url=server.base_url + "/v1", is_chat_model=True, max_retries=0)
    image = ImageInput(b"\x89PNG\r\n\x1a\n", "image/png")
    content = [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": image.to_url()}}]
    prompt = Prompt(text="", messages=[{"role": "user", "content": content}], images=[image],
                    cur_role="assistant")
    with pytest.raises(OpenAIBackendError, match="images") as info:
        chat.generate(prompt, GREEDY)
    assert info.value.status_code == 400 and chat.num_api_calls == 1


def _native_choice_logprobs(http: httpx.Client, prompt: str, choice: str) -> list[float]:
    """Logprobs of the tokens after the longest common token prefix of prompt and prompt+choice."""
    ids = http.post("/tokenize", json={"prompt": prompt}).json()["tokens"]
    body = {"text": prompt + choice, "sampling_params": {"max_new_tokens": 0},
            "return_logprob": True, "logprob_start_len": 0}
    entries = http.post("/generate", json=body).json()["meta_info"]["input_token_logprobs"]
    k = 0
    while k < len(ids) and entries[k][1] == ids[k]:
        k += 1
    return [e[0] for e in entries[k:]]


@pytest.mark.parametrize("prompt_text,choices", [
    (PROMPT_TEXT, [" London", " Paris", " Berlin"]),
    (PROMPT_TEXT + " ", ["Paris", "Rome"]),  # the prompt's space merges into the choice's token
])
def test_exact_select_matches_native_logprobs(server: SimpleNamespace, http: httpx.Client,
                                              prompt_text: str, choices: list[str]) -> None:
    text = OpenAI(MODEL_NAME, base_url=server.base_url + "/v1", is_chat_model=False, max_retries=0)
    decision = text.select(Prompt(text=prompt_text), choices, 0.0, token_length_normalized)
    got = [[e[0] for e in entries] for entries in decision.meta_info["input_token_logprobs"]]
    expected = [_native_choice_logprobs(http, prompt_text, c) for c in choices]
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, abs=TOL)
    means = [sum(e) / len(e) for e in expected]
    assert decision.decision == choices[means.index(max(means))]
    assert text.num_api_calls == 1 and decision.meta_info["num_api_calls"] == 1
    for method in (greedy_token_selection, unconditional_likelihood_normalized):
        assert text.select(Prompt(text=prompt_text), choices, 0.0, method).decision in choices
    assert text.num_api_calls == 3


def test_chat_select_with_top_logprobs(server: SimpleNamespace) -> None:
    chat = OpenAI(MODEL_NAME, base_url=server.base_url + "/v1", is_chat_model=True, max_retries=0)
    prompt = Prompt(text="", messages=list(CHAT_MESSAGES_), cur_role="assistant")
    greedy = chat.generate(prompt, SglSamplingParams(max_new_tokens=3, temperature=0.0)).text
    choices = ["\x00never", greedy[:2] + "\x00", greedy]
    decision = chat.select(prompt, choices, 0.0, token_length_normalized)
    assert decision.decision == greedy
    meta = decision.meta_info
    assert meta["select_method"] == "top_logprobs" and meta["coverage"][2] == 1.0
    assert meta["coverage"][0] == 0.0 and meta["generated_text"].startswith(greedy)
    assert chat.num_api_calls == 2 and meta["num_api_calls"] == 1
