"""Constrained pythonic calls: the grammar built from the tools' schemas accepts exactly lists of
calls whose keyword arguments are Python literals satisfying the schemas, and random walks over
the tiny tokenizer (temperature 1 over a flat model) always parse back into valid calls."""

from __future__ import annotations

import json
import random

import pytest
import xgrammar as xgr
from jsonschema import validate
from xgrammar.testing import _is_grammar_accept_string

from sglang.runtime.function_call.pythonic import PythonicFormat
from sglang.runtime.function_call.pythonic_grammar import MAX_PARALLEL_CALLS, pythonic_calls_ebnf, python_literal
from sglang.runtime.function_call.types import ToolCall
from tests.constrained import walk
from tests.constrained.walk import random_walk

WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "minLength": 1, "maxLength": 8},
    "days": {"type": "integer", "minimum": 1, "maximum": 7},
    "unit": {"enum": ["c", "f"]},
    "flags": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2},
    "ratio": {"type": ["number", "null"]},
    "where": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                               "name": {"$ref": "#/$defs/short"}}, "required": ["lat"]}},
    "required": ["city", "days"], "$defs": {"short": {"type": "string", "maxLength": 3}}}
TIME = {"type": "object", "properties": {"tz": {"anyOf": [{"const": "UTC"}, {"type": "integer"}]},
                                         "extra": {}}, "required": ["tz"]}
TOOLS = [{"name": "get_weather", "parameters": WEATHER}, {"name": "get_time", "parameters": TIME},
         {"name": "ping", "parameters": {"type": "object"}}]
SCHEMAS = {t["name"]: t["parameters"] for t in TOOLS}
NAMES = frozenset(SCHEMAS)
FMT = PythonicFormat()


def accepts(ebnf: str, text: str) -> bool:
    return _is_grammar_accept_string(xgr.Grammar.from_ebnf(ebnf), text)


def render(name: str, args: dict) -> str:
    return f"{name}(" + ", ".join(f"{k}={python_literal(v)}" for k, v in args.items()) + ")"


GOOD = [("get_weather", {"city": "Paris", "days": 3}),
        ("get_weather", {"city": 'a"b\\é', "days": 7, "unit": "f", "flags": [True, False], "ratio": None,
                         "where": {"lat": -12.5, "name": "abc"}}),
        ("get_weather", {"city": "x", "days": 1, "ratio": 1.5e3}),
        ("get_time", {"tz": "UTC"}), ("get_time", {"tz": -4, "extra": {"k": [1, "two", None]}}),
        ("ping", {})]
BAD = ['[get_weather(city="Paris", days=9)]',  # maximum
       '[get_weather(days=3)]',  # required
       '[get_weather(city="Parisienne", days=3)]',  # maxLength
       '[get_weather(days=3, city="P")]',  # order
       '[get_weather(city="P", days=3, unit="k")]',  # enum
       '[get_weather(city="P", days=3, flags=[])]',  # minItems
       '[get_weather(city="P", days=3, ratio=true)]',  # JSON spelling
       '[get_weather(city="P", days=3, where={"name": "ab"})]',  # nested required
       '[get_time(tz="CET")]', '[other()]', "I will not call anything.", "[]"]


def test_accepts_valid_calls_and_parses_them_back():
    ebnf = pythonic_calls_ebnf(TOOLS, parallel=True)
    for name, args in GOOD:
        text = f"[{render(name, args)}]"
        assert accepts(ebnf, text), text
        assert FMT.parse(text, NAMES) == ("", [ToolCall(name, json.dumps(args, ensure_ascii=False))])
    both = "[" + ", ".join(render(n, a) for n, a in GOOD[:2]) + "]"
    assert accepts(ebnf, both)
    assert accepts(ebnf, "[get_weather(city='Rome', days=2)]")  # single quotes are Python too
    assert not accepts(ebnf, "[" + ", ".join([render(*GOOD[0])] * (MAX_PARALLEL_CALLS + 1)) + "]")
    single = pythonic_calls_ebnf(TOOLS, parallel=False)
    assert accepts(single, f"[{render(*GOOD[0])}]") and not accepts(single, both)


@pytest.mark.parametrize("text", BAD)
def test_rejects_invalid_calls(text):
    assert not accepts(pythonic_calls_ebnf(TOOLS, parallel=True), text)


@pytest.mark.parametrize("tool", [{"name": "get-weather", "parameters": {"type": "object"}},
                                  {"name": "f", "parameters": {"type": "object", "properties": {"from": {}}}}])
def test_names_that_python_cannot_call_are_refused(tool):
    with pytest.raises(ValueError, match="Python identifier"):
        pythonic_calls_ebnf([tool], parallel=False)


def test_random_walks_parse_and_validate(compiled, vocab, monkeypatch):
    # Python strings may be single-quoted: let the walk's steering close those too.
    monkeypatch.setattr(walk, "_CLOSERS", walk._CLOSERS | {b"'"})
    ebnf = pythonic_calls_ebnf(TOOLS, parallel=True)
    rng = random.Random(21)
    for _ in range(32):
        result = random_walk(compiled("xgrammar", "ebnf", ebnf), vocab, rng, max_steps=400)
        assert result.terminated, result.text
        content, calls = FMT.parse(result.text, NAMES)
        assert content == "" and calls, result.text
        for call in calls:
            validate(json.loads(call.arguments), SCHEMAS[call.name])


def test_auto_is_free_text_or_a_whole_constrained_call_list():
    from sglang.runtime.function_call.pythonic_grammar import pythonic_auto_ebnf

    ebnf = pythonic_auto_ebnf(TOOLS, parallel=True)
    for text in ("", "It is sunny in Paris.", "Sure: [not a call", f"  [{render(*GOOD[0])}]",
                 "[" + ", ".join(render(n, a) for n, a in GOOD[:2]) + "]"):
        assert accepts(ebnf, text), text
    for text in BAD[:-2] + ["[", " [get_weather(city='P', days=3)] and more"]:  # a reply opening with "[" is a call list
        assert not accepts(ebnf, text), text
    assert not accepts(pythonic_auto_ebnf(TOOLS, parallel=False), "[" + ", ".join(render(*GOOD[0]) for _ in "ab") + "]")
