"""<think> splitting: complete outputs, and streams fed at every character boundary whose deltas
add up to the complete split."""

from __future__ import annotations

import pytest

from sglang.runtime.reasoning.registry import REASONING_PARSER_NAMES, get_reasoning_parser
from sglang.runtime.reasoning.parser import ReasoningStream

CASES = [
    ("qwen3", "<think>\nThe user wants weather.\n</think>\n\nIt is sunny.", "The user wants weather.", "It is sunny."),
    ("qwen3", "It is sunny, no thinking.", "", "It is sunny, no thinking."),
    ("qwen3", "<think>\ncut off by max_tokens", "cut off by max_tokens", ""),
    ("qwen3", "<thin>not a tag", "", "<thin>not a tag"),
    ("deepseek-r1", "Let me think.\n</think>\nParis.", "Let me think.", "Paris."),
    ("deepseek-r1", "<think>Explicit open.</think>Paris.", "Explicit open.", "Paris."),
    ("deepseek-r1", "never closed", "never closed", ""),
    ("qwen3-thinking", "a < b </thin </think>yes", "a < b </thin", "yes"),
]


@pytest.mark.parametrize("name,text,reasoning,content", CASES)
def test_split_complete(name, text, reasoning, content):
    assert get_reasoning_parser(name).split(text, final=True) == (reasoning, content)


@pytest.mark.parametrize("name,text,reasoning,content", CASES)
def test_stream_every_boundary(name, text, reasoning, content):
    stream = ReasoningStream(get_reasoning_parser(name))
    got_r, got_c = "", ""
    for k in range(len(text) + 1):
        r, c, _ = stream.feed(text[:k], final=k == len(text))
        got_r, got_c = got_r + r, got_c + c
        assert "</think>" not in got_r and "<think>" not in got_c or content.startswith("<")
    assert (got_r, got_c) == (reasoning, content)


def test_names():
    assert {"deepseek-r1", "qwen3"} <= set(REASONING_PARSER_NAMES)
    with pytest.raises(ValueError, match="unknown reasoning parser 'r2'"):
        get_reasoning_parser("r2")


@pytest.mark.parametrize("name", ["qwen3", "deepseek-r1"])
def test_schema_applies_after_the_thinking(name):
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string as accepts

    from sglang.runtime.reasoning.grammar import schema_after_reasoning_ebnf

    schema = '{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}'
    grammar = xgr.Grammar.from_ebnf(schema_after_reasoning_ebnf(get_reasoning_parser(name), schema))
    assert accepts(grammar, '<think>\nfree text, even {"a": "x"} < here\n</think>\n\n{"a": 1}')
    assert not accepts(grammar, '<think>ok</think>{"a": "not an integer"}')
    assert not accepts(grammar, '<think>ok</think>plain text')
    assert accepts(grammar, '{"a": 1}') == (name == "qwen3")  # R1's template opens the thinking itself
