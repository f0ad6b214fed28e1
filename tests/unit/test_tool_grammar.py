"""The constrained-call grammars: they accept exactly well-formed calls in each family's layout,
whose arguments satisfy the tool's schema, and what they accept parses back into those calls."""

from __future__ import annotations

import json

import pytest
import xgrammar as xgr
from xgrammar.testing import _is_grammar_accept_string

from sglang.runtime.function_call.grammar import MAX_PARALLEL_CALLS, calls_ebnf, triggered_ebnf
from sglang.runtime.function_call.registry import get_format
from sglang.runtime.function_call.types import ToolCall

TOOLS = [
    {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"]}},
    {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}},
                                        "required": ["tz"]}},
]
NAMES = frozenset(t["name"] for t in TOOLS)
GOOD = [ToolCall("get_weather", '{"city": "Paris", "days": 3}'), ToolCall("get_time", '{"tz": "CET"}')]
BAD_ARGS = [ToolCall("get_weather", '{"city": "Paris", "days": 9}'),  # maximum
            ToolCall("get_weather", '{"city": "Paris"}'),  # required
            ToolCall("get_time", '{"tz": "PST"}'),  # enum
            ToolCall("get_other", '{}')]  # not a tool
JSON_FAMILIES = ["hermes", "qwen25", "llama3", "mistral", "deepseekv3"]


def accepts(ebnf: str, text: str) -> bool:
    return _is_grammar_accept_string(xgr.Grammar.from_ebnf(ebnf), text)


@pytest.mark.parametrize("parser", JSON_FAMILIES)
def test_calls_grammar_accepts_valid_calls_only(parser):
    fmt = get_format(parser)
    ebnf = calls_ebnf(fmt.layout(), TOOLS, parallel=True)
    for calls in ([GOOD[0]], [GOOD[1]], GOOD):
        text = fmt.render_calls(calls)
        assert accepts(ebnf, text), text
        assert fmt.parse(text, NAMES) == ("", calls)
    for bad in BAD_ARGS:
        assert not accepts(ebnf, fmt.render_calls([bad])), bad
    assert not accepts(ebnf, "I will not call anything.")
    assert not accepts(ebnf, fmt.render_calls(GOOD * MAX_PARALLEL_CALLS))  # bounded
    single = calls_ebnf(fmt.layout(), TOOLS, parallel=False)
    assert accepts(single, fmt.render_calls([GOOD[0]])) and not accepts(single, fmt.render_calls(GOOD))


@pytest.mark.parametrize("parser", ["hermes", "mistral", "deepseekv3"])
def test_triggered_grammar_is_free_text_until_the_marker(parser):
    fmt = get_format(parser)
    ebnf = triggered_ebnf(fmt.layout(), TOOLS, parallel=True)
    assert accepts(ebnf, "Just text, no calls.")
    assert accepts(ebnf, "Let me check. " + fmt.render_calls([GOOD[0]]))
    assert not accepts(ebnf, "Let me check. " + fmt.render_calls([BAD_ARGS[0]]))


def test_llama3_auto_constrains_a_reply_that_opens_a_call():
    fmt = get_format("llama3")
    ebnf = triggered_ebnf(fmt.layout(), TOOLS, parallel=True)
    assert accepts(ebnf, "") and accepts(ebnf, "Just text, with {braces} later.")
    for calls in ([GOOD[0]], GOOD):
        text = fmt.render_calls(calls)
        assert accepts(ebnf, text) and accepts(ebnf, "\n " + text)
        assert fmt.parse(text, NAMES) == ("", calls)
    for bad in BAD_ARGS:
        assert not accepts(ebnf, fmt.render_calls([bad])), bad
    assert not accepts(ebnf, '{"answer": 42}') and not accepts(ebnf, ' {"name": "get_time"')
    single = triggered_ebnf(fmt.layout(), TOOLS, parallel=False)
    assert not accepts(single, fmt.render_calls(GOOD))


def test_schema_order_and_escapes():
    tools = [{"name": "say", "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                                             "required": ["text"]}}]
    fmt = get_format("hermes")
    ebnf = calls_ebnf(fmt.layout(), tools, parallel=False)
    text = fmt.render_calls([ToolCall("say", json.dumps({"text": 'a "quote" \\ é'}))])
    assert accepts(ebnf, text)
    assert not accepts(ebnf, fmt.render_calls([ToolCall("say", '{"text": "raw\u0001control"}')]))
