"""Tool calling and reasoning through the unmodified `openai` client, against the trained tiny
model served with --tool-call-parser hermes --reasoning-parser qwen3 (the model's own template
knows nothing of tools, so they are described in Hermes' system-prompt format)."""

from __future__ import annotations

import json
from typing import Iterator, List

import openai
import pytest
from jsonschema import validate

from sglang.testing.fixtures import trained_model_dir
from tests.server.server_process import MODEL_NAME, start_server

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 7},
                                            "unit": {"enum": ["c", "f"]}},
           "required": ["city", "days", "unit"]}
TIME = {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 8}}, "required": ["tz"]}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
TOOLS = [{"type": "function", "function": {"name": n, "description": f"{n} tool", "parameters": s}}
         for n, s in SCHEMAS.items()]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
SAMPLES = 24  # per mode in CI; the 200-sample measurement is in the report (same code, n larger)


@pytest.fixture(scope="module")
def oai() -> Iterator[openai.OpenAI]:
    server = start_server(trained_model_dir(), ["--device", "cpu", "--tool-call-parser", "hermes",
                                                "--reasoning-parser", "qwen3"])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    yield client
    client.close()
    server.terminate()


def check_calls(calls: List, only: str = "") -> None:
    assert calls
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert not only or call.function.name == only
        validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def streamed(oai: openai.OpenAI, **kwargs) -> tuple:
    """(content, [(id, name, arguments)], finish_reason) assembled from a stream's deltas."""
    content, calls, finish = "", {}, None
    for chunk in oai.chat.completions.create(model=MODEL_NAME, stream=True, **kwargs):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                if delta.id is not None:
                    assert delta.index not in calls and delta.function.name
                    calls[delta.index] = [delta.id, delta.function.name, ""]
                else:
                    assert delta.function.name is None
                calls[delta.index][2] += delta.function.arguments or ""
    return content, [calls[i] for i in sorted(calls)], finish


@pytest.mark.parametrize("choice", ["required", "named"])
def test_constrained_calls_always_validate(oai, choice):
    reply = oai.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS, n=SAMPLES, temperature=1.0,
                                        max_tokens=400, tool_choice=NAMED if choice == "named" else "required")
    for c in reply.choices:
        assert c.finish_reason == "tool_calls", c
        assert c.message.content is None
        check_calls(c.message.tool_calls, "get_weather" if choice == "named" else "")


@pytest.mark.parametrize("choice", ["required", "named"])
def test_streamed_constrained_calls(oai, choice):
    for seed in range(4):
        content, calls, finish = streamed(oai, messages=ASK, tools=TOOLS, temperature=1.0, seed=seed,
                                          max_tokens=160, tool_choice=NAMED if choice == "named" else "required",
                                          parallel_tool_calls=False)
        assert finish == "tool_calls" and content == "" and len(calls) == 1
        name, args = calls[0][1], calls[0][2]
        validate(json.loads(args), SCHEMAS[name])


def test_full_tool_loop(oai):
    first = oai.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                        temperature=0, max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18}'}]
    final = oai.chat.completions.create(model=MODEL_NAME, messages=history, tools=TOOLS, tool_choice="none",
                                        temperature=0, max_tokens=20)
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].finish_reason in ("stop", "length")
    auto = oai.chat.completions.create(model=MODEL_NAME, messages=history, tools=TOOLS, temperature=0, max_tokens=20)
    assert auto.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_reasoning_split_plain_and_streamed(oai):
    forced = {"regex": r"<think>\nsunny skies\n</think>\n\nIt is sunny\."}
    reply = oai.chat.completions.create(model=MODEL_NAME, messages=ASK, temperature=0, max_tokens=40,
                                        extra_body=forced)
    assert reply.choices[0].message.reasoning_content == "sunny skies"
    assert reply.choices[0].message.content == "It is sunny."
    reasoning, content = "", ""
    for chunk in oai.chat.completions.create(model=MODEL_NAME, messages=ASK, temperature=0, max_tokens=40,
                                             stream=True, extra_body=forced):
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            content += choice.delta.content or ""
    assert (reasoning, content) == ("sunny skies", "It is sunny.")
    for off in ({"separate_reasoning": False}, {"chat_template_kwargs": {"enable_thinking": False}}):
        raw = oai.chat.completions.create(model=MODEL_NAME, messages=ASK, temperature=0, max_tokens=40,
                                          extra_body={**forced, **off})
        assert raw.choices[0].message.content.startswith("<think>")


def test_response_format_constrains_the_answer_after_reasoning(oai):
    schema = {"type": "object", "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 99}},
              "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    reply = oai.chat.completions.create(model=MODEL_NAME, messages=ASK, temperature=1.0, max_tokens=200, n=8,
                                        response_format=fmt)
    finished = [c for c in reply.choices if c.finish_reason == "stop"]
    assert finished
    for choice in finished:
        validate(json.loads(choice.message.content), schema)


@pytest.mark.parametrize("kwargs,needle", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                               "properties": {"a": {"type": 5}}}}}]},
     "not a valid JSON Schema"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope'"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice must be one of"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tool function names"),
    ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "cannot be combined"),
])
def test_bad_tool_requests_are_400(oai, kwargs, needle):
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model=MODEL_NAME, messages=ASK, max_tokens=4, **kwargs)
    assert needle in str(err.value)
    ok = oai.chat.completions.create(model=MODEL_NAME, messages=ASK, max_tokens=4)
    assert ok.choices[0].finish_reason in ("stop", "length")
