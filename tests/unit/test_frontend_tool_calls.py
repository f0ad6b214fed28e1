"""The frontend's tool-call helpers: the grammar accepts the family's calls with valid arguments
only, and the parse returns them."""

from __future__ import annotations

import json

import pytest
import xgrammar as xgr
from xgrammar.testing import _is_grammar_accept_string

from sglang.lang.tool_calls import parse_tool_calls, tool_call_ebnf
from sglang.runtime.function_call.registry import get_format
from sglang.runtime.function_call.types import ToolCall

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]


@pytest.mark.parametrize("parser", ["hermes", "llama3", "mistral", "pythonic"])
def test_grammar_and_parse_round_trip(parser):
    grammar = xgr.Grammar.from_ebnf(tool_call_ebnf(TOOLS, parser))
    good = get_format(parser).render_calls([ToolCall("get_weather", json.dumps({"city": "Rome"}))])
    bad = get_format(parser).render_calls([ToolCall("get_weather", json.dumps({"city": "Rome, Italy"}))])
    assert _is_grammar_accept_string(grammar, good) and not _is_grammar_accept_string(grammar, bad)
    assert parse_tool_calls(good, TOOLS, parser) == [ToolCall("get_weather", '{"city": "Rome"}')]
    assert parse_tool_calls("no call here", TOOLS, parser) == []


def test_bare_function_dicts_and_errors():
    assert tool_call_ebnf([TOOLS[0]["function"]]) == tool_call_ebnf(TOOLS)
    with pytest.raises(ValueError, match="at least one tool"):
        tool_call_ebnf([])
    with pytest.raises(ValueError, match="function dict with a name"):
        tool_call_ebnf([{"type": "function", "function": {}}])
