"""`sgl.gen(..., ebnf=tool_call_ebnf(tools, parser))` on the engine: sampled at temperature 1,
every reply is calls whose arguments validate against the tool's schema (hermes and pythonic)."""

from __future__ import annotations

import json

import pytest
from jsonschema import validate

import sglang as sgl
from sglang.lang.tool_calls import parse_tool_calls, tool_call_ebnf

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                           "days": {"type": "integer", "minimum": 1, "maximum": 7}},
          "required": ["city", "days"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]


@sgl.function
def _ask(s, ebnf):
    s += "Weather in Rome? " + sgl.gen("call", max_tokens=120, temperature=1.0, ebnf=ebnf)


@pytest.mark.parametrize("parser", ["hermes", "pythonic"])
def test_sampled_calls_validate(engine_backend, parser):
    states = _ask.run_batch([{"ebnf": tool_call_ebnf(TOOLS, parser)}] * 8, backend=engine_backend)
    for state in states:
        assert state.get_meta_info("call")["finish_reason"]["type"] == "stop", state["call"]
        calls = parse_tool_calls(state["call"], TOOLS, parser)
        assert len(calls) == 1 and calls[0].name == "get_weather", state["call"]
        validate(json.loads(calls[0].arguments), SCHEMA)
