"""The `openai` client's tool loop against a server per call format (--tool-call-parser): a named
call comes back as message.tool_calls with valid arguments, streamed as delta.tool_calls, and the
tool result goes back through the history. The trained tiny model knows no format, so the
constrained formats are the point (pythonic included: its calls are generated under a grammar of
Python literals built from the schema)."""

from __future__ import annotations

import json
from typing import Iterator

import openai
import pytest
from jsonschema import validate

from sglang.runtime.function_call.registry import TOOL_CALL_PARSER_NAMES
from sglang.testing.fixtures import trained_model_dir
from tests.server.server_process import MODEL_NAME, start_server

pytestmark = pytest.mark.slow
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12},
                                           "days": {"type": "integer", "minimum": 1, "maximum": 3}},
          "required": ["city", "days"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "Weather in Rome?"}]


@pytest.fixture(scope="module", params=TOOL_CALL_PARSER_NAMES)
def family(request) -> Iterator[tuple]:
    server = start_server(trained_model_dir(), ["--device", "cpu", "--tool-call-parser", request.param])
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    yield request.param, client
    client.close()
    server.terminate()


def test_named_call_loop_and_stream(family):
    parser, oai = family
    reply = oai.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                        temperature=1.0, seed=3, max_tokens=400)
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls" and message.content is None
    call = message.tool_calls[0]
    assert call.function.name == "get_weather"
    validate(json.loads(call.function.arguments), SCHEMA)

    history = ASK + [message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    final = oai.chat.completions.create(model=MODEL_NAME, messages=history, tools=TOOLS, tool_choice="none",
                                        temperature=0, max_tokens=8)
    assert final.choices[0].message.tool_calls is None

    names, args, content = [], "", ""
    for chunk in oai.chat.completions.create(model=MODEL_NAME, messages=ASK, tools=TOOLS, tool_choice=NAMED,
                                             temperature=1.0, seed=3, max_tokens=400, stream=True):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                names += [delta.function.name] if delta.function.name else []
                args += delta.function.arguments or ""
    assert names == ["get_weather"] and content == ""
    assert json.loads(args) == json.loads(call.function.arguments)  # same seed, same call
