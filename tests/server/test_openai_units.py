"""Pieces of the OpenAI layer without a server: prompt counting, text offsets, error shapes, auth."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from sglang.launch_server import parse_server_args
from sglang.runtime.entrypoints.auth import bearer_token
from sglang.runtime.entrypoints.openai.errors import APIError, is_openai_path
from sglang.runtime.entrypoints.openai.protocol import CompletionRequest
from sglang.runtime.entrypoints.openai.serving_completions import plan_completion
from sglang.runtime.entrypoints.openai.text_offsets import TextOffsets
from sglang.runtime.entrypoints.request_body import validate_model
from sglang.runtime.entrypoints.server_context import MAX_REQUESTS_PER_CALL, ServerContext
from sglang.runtime.managers.prompt_limits import PromptLimits
from sglang.testing.fixtures import tiny_model_dir


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_model_dir("llama"))


def _ctx(tokenizer) -> ServerContext:
    context_len = 10**6  # room for any test prompt: only the prompt count is under test
    tm = SimpleNamespace(tokenizer=tokenizer, vocab_size=len(tokenizer), context_len=context_len,
                         request_tokenizer=SimpleNamespace(limits=PromptLimits(tokenizer, context_len)))
    return ServerContext(parse_server_args(["--model-path", "/m", "--device", "cpu"]), tm)


# ---------------------------------------------------------------------------------- prompt count
@pytest.mark.parametrize("prompt,n,count", [
    ("x" * 4203, 1, 1),  # a string is one prompt, not 4203
    ("x" * 100, 40, 1),
    ([3 + i % 900 for i in range(5000)], 1, 1),  # one prompt of token ids
    (["ab"] * 3, 2, 3),
    ([[5, 6]] * 4, 2, 4),
])
def test_completion_prompt_count(tokenizer, prompt, n, count):
    req = validate_model({"prompt": prompt, "n": n, "max_tokens": 1}, CompletionRequest)
    plan = plan_completion(_ctx(tokenizer), req)
    assert len(plan.prompt_texts) == count and plan.n == n


@pytest.mark.parametrize("prompt", [["ab"] * (MAX_REQUESTS_PER_CALL // 2 + 1), [[5]] * (MAX_REQUESTS_PER_CALL // 2 + 1)])
def test_completion_prompt_count_limit(tokenizer, prompt):
    req = validate_model({"prompt": prompt, "n": 2, "max_tokens": 1}, CompletionRequest)
    with pytest.raises(APIError, match=f"{len(prompt)} prompts x n=2 exceeds"):
        plan_completion(_ctx(tokenizer), req)


# ---------------------------------------------------------------------------------- text offsets
def _entries(tokenizer, ids):
    return [[-1.0, i, tokenizer.decode([i])] for i in ids]


@pytest.mark.parametrize("text", ["Once upon a time", "日本語 ok, é", "aé😀b  c"])
def test_text_offsets_of_a_prompt_index_its_text(tokenizer, text):
    ids = tokenizer.encode(text)  # BOS first: a token the text leaves out
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert TextOffsets(tokenizer).take(_entries(tokenizer, ids), len(text)) == _expected_offsets(tokenizer, ids)


def _expected_offsets(tokenizer, ids) -> list:
    """A token starts where the text decoded before it agrees with the whole text: a byte that
    only completes a character points at the character's start."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return [len(os.path.commonprefix([tokenizer.decode(ids[:k], skip_special_tokens=True), text]))
            for k in range(len(ids))]


def test_text_offsets_invalid_byte_and_limit(tokenizer):
    lone = tokenizer.encode("é", add_special_tokens=False)[:1]  # the first byte alone is invalid
    ex = tokenizer.encode("ex", add_special_tokens=False)
    offsets = TextOffsets(tokenizer, start=5).take(_entries(tokenizer, lone + ex), limit=100)
    assert offsets == [5, 6]  # "ex" starts after the U+FFFD its predecessor became
    assert TextOffsets(tokenizer).take(_entries(tokenizer, ex * 3), limit=3) == [0, 2, 3]


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab é日本😀"), max_size=12), st.integers(1, 4))
# Byte tokens that each end mid-character for more than MAX_OPEN_TOKENS tokens (found by CI).
@example(text="日日日日日", piece=1)
@example(text="日" * 12, piece=3)
def test_text_offsets_streamed_in_pieces_match_whole(tokenizer, text, piece):
    tok = tokenizer
    ids = tok.encode(text)
    whole = TextOffsets(tok).take(_entries(tok, ids), len(text))
    streamed, tracker = [], TextOffsets(tok)
    for i in range(0, len(ids), piece):
        streamed += tracker.take(_entries(tok, ids[i:i + piece]), len(text))
    assert whole == _expected_offsets(tok, ids) and streamed == whole


def test_text_offsets_without_tokenizer_sum_token_texts():
    assert TextOffsets(None, start=2).take([[0, 1, "ab"], [0, 2, None], [0, 3, "c"]], limit=10) == [2, 4, 4]


# ---------------------------------------------------------------------------------- errors and auth
def test_error_shapes_by_route():
    err = APIError("bad thing", 404, param="model", code="model_not_found")
    assert err.body_for("/v1/models/x") == {"error": {"message": "bad thing", "type": "invalid_request_error",
                                                      "param": "model", "code": "model_not_found"}}
    assert err.body_for("/generate") == {"object": "error", "message": "bad thing", "type": "NotFoundError",
                                         "param": "model", "code": 404}
    assert APIError("x", 503).openai_body()["error"]["type"] == "server_error"
    assert APIError("x", 401).openai_body()["error"]["code"] == "invalid_api_key"
    assert [is_openai_path(p) for p in ("/v1", "/v1/chat/completions", "/v10", "/generate")] == [True, True, False,
                                                                                                   False]


def test_nonstandard_status_does_not_raise():
    """499 (client closed) has no HTTPStatus member; building its error used to raise ValueError."""
    err = APIError("the client disconnected", 499)
    assert err.body()["code"] == 499 and err.openai_body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("value,token", [(b"Bearer k", b"k"), (b"bearer k", b"k"), (b"BEARER  k", b"k"),
                                         (b"Basic k", None), (b"k", None), (b"Bearerk", None)])
def test_bearer_token_scheme_is_case_insensitive(value, token):
    assert bearer_token(value) == token
