"""The structured-generation spec suite: JSON schemas, regexes and EBNF grammars with validators."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Tuple

import jsonschema

ALL_BACKENDS = ("fsm", "xgrammar")


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # "json" | "regex" | "ebnf"
    spec: str
    check: Callable[[str], None]  # raises (AssertionError / ValidationError) on invalid text
    backends: Tuple[str, ...] = ALL_BACKENDS


def _json_spec(name: str, schema: dict) -> Spec:
    def check(text: str) -> None:
        value = json.loads(text)
        jsonschema.validate(value, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    return Spec(name, "json", json.dumps(schema, ensure_ascii=False), check)


def _regex_spec(name: str, pattern: str) -> Spec:
    def check(text: str) -> None:
        assert re.fullmatch(pattern, text), f"{text!r} does not fully match {pattern!r}"

    return Spec(name, "regex", pattern, check)


def _ebnf_spec(name: str, grammar: str, check: Callable[[str], None]) -> Spec:
    return Spec(name, "ebnf", grammar, check, backends=("xgrammar", "lark"))


def _check_balanced(text: str) -> None:
    """root ::= "()" | "(" root ")" | "[" root "]"  -> nested brackets around one "()"."""
    while len(text) > 2 and (text[0], text[-1]) in (("(", ")"), ("[", "]")):
        text = text[1:-1]
    assert text == "()", f"not a balanced nesting: {text!r}"


def _check_arith(text: str) -> None:
    """expr ::= term (("+" | "*") term)*, term ::= [0-9]+ | "(" expr ")"."""
    end = _parse_expr(text, 0)
    assert end == len(text), f"trailing text after position {end}: {text!r}"


def _parse_expr(text: str, i: int) -> int:
    i = _parse_term(text, i)
    while i < len(text) and text[i] in "+*":
        i = _parse_term(text, i + 1)
    return i


def _parse_term(text: str, i: int) -> int:
    if text[i:i + 1] == "(":
        i = _parse_expr(text, i + 1)
        assert text[i:i + 1] == ")", f"missing ')' at {i}: {text!r}"
        return i + 1
    j = i
    while j < len(text) and text[j].isdigit():
        j += 1
    assert j > i, f"expected a number at {i}: {text!r}"
    return j


_ADDRESS = {
    "type": "object",
    "properties": {
        "street": {"type": "string", "maxLength": 12},
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
    },
    "required": ["street", "zip"],
}

SPECS = [
    _json_spec("nested_objects", {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 10}, "address": _ADDRESS},
        "required": ["name", "address"],
    }),
    _json_spec("array_bounds", {
        "type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 2, "maxItems": 4,
    }),
    _json_spec("enums", {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}, "size": {"enum": [1, 2, 3, None]}},
        "required": ["color", "size"],
    }),
    _json_spec("integer_bounds", {"type": "integer", "minimum": -50, "maximum": 1234}),
    _json_spec("number_bounds", {"type": "number", "minimum": -2.5, "exclusiveMaximum": 100}),
    _json_spec("string_pattern", {
        "type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}},
        "required": ["code"],
    }),
    _json_spec("string_pattern_negated", {
        "type": "object", "properties": {"csv": {"type": "string", "pattern": "^[^,]{1,8}$"}}, "required": ["csv"],
    }),
    _json_spec("string_lengths", {"type": "string", "minLength": 2, "maxLength": 6}),
    _json_spec("unicode_strings", {
        "type": "object",
        "properties": {"city": {"enum": ["東京", "München", "São Paulo"]}, "note": {"type": "string", "maxLength": 5}},
        "required": ["city", "note"],
    }),
    _json_spec("optional_fields", {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}},
        "required": ["b"],
    }),
    _json_spec("all_optional", {
        "type": "object", "properties": {"x": {"type": "integer", "maximum": 9}, "y": {"type": "string", "maxLength": 3}},
    }),
    _json_spec("const_field", {
        "type": "object", "properties": {"version": {"const": "1.0"}, "ok": {"type": "boolean"}},
        "required": ["version", "ok"],
    }),
    _json_spec("any_of", {"anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 10}, {"type": "string", "maxLength": 3}, {"type": "null"},
    ]}),
    _json_spec("refs", {
        "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                         "required": ["x", "y"]}},
        "type": "object", "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}},
        "required": ["a", "b"],
    }),
    _json_spec("array_of_objects", {
        "type": "array", "minItems": 1, "maxItems": 2,
        "items": {"type": "object", "required": ["id", "tags"], "properties": {
            "id": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2},
        }},
    }),
    _json_spec("date_format", {
        "type": "object", "properties": {"when": {"type": "string", "format": "date"}}, "required": ["when"],
    }),
    _json_spec("generic_object", {"type": "object"}),
    _regex_spec("date", r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"),
    _regex_spec("email_like", r"[a-z][a-z0-9._]{0,10}@[a-z]{2,8}\.(com|org|net)"),
    _regex_spec("phone", r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}"),
    _regex_spec("ipv4", r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"),
    _regex_spec("long_constant", r"The answer is (yes|no)\."),
    _regex_spec("unicode_regex", r"(héllo|日本語|café)+ [0-9]{1,3}"),
    _regex_spec("json_extraction", r'\{"name": "[a-z]{1,8}", "age": [0-9]{1,2}\}'),
    _ebnf_spec("ebnf_yes_no_list", 'root ::= item ("," item)*\nitem ::= "yes" | "no"',
               lambda t: _regex_spec("", r"(yes|no)(,(yes|no))*").check(t)),
    _ebnf_spec("ebnf_balanced", 'root ::= "()" | "(" root ")" | "[" root "]"', _check_balanced),
    _ebnf_spec("ebnf_arith", 'root ::= expr\nexpr ::= term (("+" | "*") term)*\nterm ::= [0-9]+ | "(" expr ")"',
               _check_arith),
]


def spec_params():
    """(backend, spec) pairs for parametrization, each with a readable id."""
    import pytest

    return [pytest.param(b, s, id=f"{b}-{s.name}") for s in SPECS for b in s.backends]
