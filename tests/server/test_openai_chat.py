"""/v1/chat/completions through the unmodified `openai` client, checked against /generate."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from sglang.testing.fixtures import tiny_model_dir
from tests.server.http_helpers import DONE, stream_events

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
GREEDY = {"temperature": 0.0, "max_tokens": 12}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_model_dir("llama"))


def template_ids(tokenizer, messages, **kwargs) -> list:
    add_gen = not kwargs.get("continue_final_message", False)
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, add_generation_prompt=add_gen,
                                         **kwargs)


def native_greedy(http: httpx.Client, ids: list, max_new: int, **params) -> dict:
    body = {"input_ids": ids, "sampling_params": {"temperature": 0, "max_new_tokens": max_new, **params}}
    response = http.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_chat_matches_template_and_native_generate(oai, http, model, tokenizer):
    reply = oai.chat.completions.create(model=model, messages=MESSAGES, **GREEDY)
    ids = template_ids(tokenizer, MESSAGES)
    assert ids.count(tokenizer.bos_token_id) == 1  # the template writes BOS; the server must not add another
    assert reply.usage.prompt_tokens == len(ids)
    expected = native_greedy(http, ids, GREEDY["max_tokens"])
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected["text"]
    assert reply.usage.completion_tokens == expected["meta_info"]["completion_tokens"]
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert choice.finish_reason in ("stop", "length")
    assert reply.id.startswith("chatcmpl-") and reply.model == model and reply.object == "chat.completion"


def test_stream_role_first_one_finish_then_usage(oai, model):
    whole = oai.chat.completions.create(model=model, messages=MESSAGES, **GREEDY)
    chunks = list(oai.chat.completions.create(model=model, messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True}, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    assert len(finishes) == 1 and finishes[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks.index(finishes[0]) == len(chunks) - 2  # nothing but usage after the finish


def test_raw_sse_framing(http, model):
    events = stream_events(http, "/v1/chat/completions",
                           {"model": model, "messages": MESSAGES, "stream": True, **GREEDY})
    assert events[-1] == DONE and DONE not in events[:-1]
    assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
    assert len({e["id"] for e in events[:-1]}) == 1


def test_n_choices_and_usage(oai, model, tokenizer):
    reply = oai.chat.completions.create(model=model, messages=MESSAGES, n=3, temperature=1.0, seed=7, max_tokens=6,
                                        extra_body={"ignore_eos": True})
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) > 1  # seeds differ per sample
    assert reply.usage.prompt_tokens == len(template_ids(tokenizer, MESSAGES))  # counted once, not n times
    assert reply.usage.completion_tokens == 3 * 6


def test_stream_n_has_one_finish_per_choice(oai, model):
    chunks = list(oai.chat.completions.create(model=model, messages=MESSAGES, n=2, stream=True, temperature=1.0,
                                              seed=3, max_tokens=5))
    finishes = [c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason]
    assert sorted(finishes) == [0, 1]
    assert {c.index for c in chunks[0].choices} == {0, 1} and all(c.delta.role == "assistant" for c in chunks[0].choices)


def test_logprobs_and_top_logprobs(oai, model):
    reply = oai.chat.completions.create(model=model, messages=MESSAGES, logprobs=True, top_logprobs=3, **GREEDY)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3
        tops = [t.logprob for t in entry.top_logprobs]
        assert tops == sorted(tops, reverse=True) and all(lp <= 0 for lp in tops)
        assert entry.logprob == pytest.approx(tops[0], abs=1e-4)  # greedy picks the most likely token
    assert "".join(e.token for e in content).startswith(reply.choices[0].message.content[:1])


def test_stop_string_sets_finish_reason_and_matched_stop(oai, model):
    text = oai.chat.completions.create(model=model, messages=MESSAGES, temperature=0, max_tokens=24,
                                       extra_body={"ignore_eos": True}).choices[0].message.content
    candidates = [m.start() for m in re.finditer(r"[A-Za-z]{2,}", text) if m.start() > 0]
    assert candidates, f"no usable stop word in {text!r}"
    stop = text[candidates[0]:candidates[0] + 2]
    reply = oai.chat.completions.create(model=model, messages=MESSAGES, temperature=0, max_tokens=24, stop=[stop],
                                        extra_body={"ignore_eos": True})
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.model_extra["matched_stop"] == stop
    assert choice.message.content == text[:text.index(stop)]


def test_seed_reproducible(oai, model):
    def sample(seed):
        return oai.chat.completions.create(model=model, messages=MESSAGES, temperature=1.0, max_tokens=16,
                                           seed=seed).choices[0].message.content

    assert sample(42) == sample(42)
    assert sample(43) != sample(42) or sample(44) != sample(42)


def test_max_completion_tokens(oai, model):
    reply = oai.chat.completions.create(model=model, messages=MESSAGES, max_completion_tokens=3, temperature=0,
                                        extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"


def test_continue_final_message(oai, http, model, tokenizer):
    messages = [{"role": "user", "content": "Say it."}, {"role": "assistant", "content": "The answer is"}]
    reply = oai.chat.completions.create(model=model, messages=messages, extra_body={"continue_final_message": True},
                                        **GREEDY)
    ids = template_ids(tokenizer, messages, continue_final_message=True)
    assert tokenizer.decode(ids).endswith("The answer is")
    assert reply.choices[0].message.content == native_greedy(http, ids, GREEDY["max_tokens"])["text"]


def test_extra_body_sampling_extensions(oai, model):
    greedy = oai.chat.completions.create(model=model, messages=MESSAGES, **GREEDY).choices[0].message.content
    top1 = oai.chat.completions.create(model=model, messages=MESSAGES, temperature=1.0, max_tokens=12,
                                       extra_body={"top_k": 1, "min_p": 0.1, "repetition_penalty": 1.0})
    assert top1.choices[0].message.content == greedy
    forced = oai.chat.completions.create(model=model, messages=MESSAGES, temperature=0, max_tokens=7,
                                         extra_body={"min_tokens": 7, "ignore_eos": True})
    assert forced.usage.completion_tokens == 7


def test_response_format_json_schema(oai, model):
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    reply = oai.chat.completions.create(
        model=model, messages=MESSAGES, temperature=0, max_tokens=32,
        response_format={"type": "json_schema", "json_schema": {"name": "yn", "schema": schema}})
    assert json.loads(reply.choices[0].message.content)["answer"] in ("yes", "no")


def test_response_format_json_object(oai, model):
    reply = oai.chat.completions.create(model=model, messages=MESSAGES, temperature=1.0, max_tokens=200, seed=3,
                                        response_format={"type": "json_object"})
    if reply.choices[0].finish_reason == "stop":  # random weights may run out of tokens inside the object
        assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_regex_extension(oai, model):
    reply = oai.chat.completions.create(
        model=model, messages=MESSAGES, temperature=0, max_tokens=8, extra_body={"regex": "(red|blue)"})
    assert reply.choices[0].message.content in ("red", "blue")


@pytest.mark.parametrize("extra", [{"regex": "(unclosed"}, {"json_schema": '{"type": "nonsense"}'},
                                   {"ebnf": "root ::= missing_rule"}, {"json_schema": "{not json"}])
def test_invalid_grammar_is_a_400_and_the_server_keeps_serving(oai, model, http, extra):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8, extra_body=extra)
    assert "grammar" in str(info.value) or "regex" in str(info.value) or "schema" in str(info.value)
    native = http.post("/generate", json={"text": "x", "sampling_params": {"max_new_tokens": 4, **extra}})
    assert native.status_code == 400 and native.json()["message"]
    ok = oai.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4, extra_body={"regex": "[0-9]{2}"})
    assert len(ok.choices[0].message.content) == 2


def test_tool_role_and_text_parts(oai, model):
    messages = [{"role": "user", "content": [{"type": "text", "text": "Use the tool."}, {"type": "text", "text": "Now."}]},
                {"role": "assistant", "content": "calling"},
                {"role": "tool", "content": "42", "tool_call_id": "call_1"}]
    reply = oai.chat.completions.create(model=model, messages=messages, max_tokens=4)
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_image_parts_rejected(oai, model):
    with pytest.raises(openai.BadRequestError, match="does not accept images"):
        oai.chat.completions.create(model=model, max_tokens=4, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])


def test_client_errors(oai, model):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        oai.chat.completions.create(model="no-such-model", messages=MESSAGES, max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="at least one message"):
        oai.chat.completions.create(model=model, messages=[], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        oai.chat.completions.create(model=model, messages=MESSAGES, max_tokens=10**6)


# ---------------------------------------------------------------------------------- hardening
EOS_ID = 998  # the tiny llama's eos_token_id


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_zero_token_budget_is_a_400(oai, http, model, field):
    """OpenAI refuses a chat reply of 0 tokens; completions keep accepting 0 (echo scoring)."""
    with pytest.raises(openai.BadRequestError, match=f"{field} must be >= 1, got 0") as info:
        oai.chat.completions.create(model=model, messages=MESSAGES, **{field: 0})
    assert info.value.param == field
    scored = http.post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 0, "echo": True})
    assert scored.status_code == 200 and scored.json()["usage"]["completion_tokens"] == 0


def test_stream_final_chunk_carries_matched_stop(http, model, tokenizer):
    ids = template_ids(tokenizer, MESSAGES)
    greedy = native_greedy(http, ids, 24, ignore_eos=True)
    words = [m.start() for m in re.finditer(r"[A-Za-z]{2,}", greedy["text"]) if m.start() > 0]
    assert words, f"no usable stop word in {greedy['text']!r}"
    stop = greedy["text"][words[0]:words[0] + 2]
    stop_id = greedy["output_ids"][3]
    cases = [({"stop": [stop], "ignore_eos": True}, stop), ({"stop_token_ids": [stop_id], "ignore_eos": True}, stop_id),
             ({"logit_bias": {str(EOS_ID): 100}}, EOS_ID)]
    for extra, expected in cases:
        body = {"model": model, "messages": MESSAGES, "temperature": 0, "max_tokens": 24, "stream": True, **extra}
        events = stream_events(http, "/v1/chat/completions", body)
        assert events[-1] == DONE
        last = events[-2]["choices"][0]
        assert last["finish_reason"] == "stop" and last["matched_stop"] == expected, (extra, last)
        assert all(c.get("matched_stop") is None for e in events[:-2] for c in e["choices"])
    body = {"model": model, "messages": MESSAGES, "max_tokens": 3, "stream": True, "ignore_eos": True}
    last = stream_events(http, "/v1/chat/completions", body)[-2]["choices"][0]
    assert last["finish_reason"] == "length" and "matched_stop" in last and last["matched_stop"] is None
