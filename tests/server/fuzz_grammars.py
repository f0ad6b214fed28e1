"""Hypothesis strategies for the grammar fields of a request: regexes, JSON schemas, EBNF.

They mix grammars a client would send with hostile ones: repetition bounds up to 10**30,
repetitions nested inside repetitions, empty languages (`[^\\s\\S]`, a required property that
recurses forever), `$ref` cycles, and text that is no grammar at all.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List

from hypothesis import strategies as st

# Repetition bounds: mostly small, often hostile.
HUGE_COUNTS = (100, 4096, 65536, 10**5, 10**6, 10**8, 2**31, 2**63, 10**30)

REGEX_ATOMS = (
    "a", "b", "x", "0", "é", "中", "😀", " ", r"\d", r"\w", r"\s", r"\W", ".", r"\.", r"\n", "[a-z]", "[0-9]",
    "[A-Za-z_]", "[^a]", r"[^\s\S]", r"[^\d\D]", "[]a]", r"[\u0000-\uffff]", r"\x41", r"\u00e9", "[-]",
)
REGEX_QUANTIFIERS = ("*", "+", "?", "*?", "+?", "??")
# Not valid, or outside what a grammar backend supports (lookaround, backreferences, anchors).
BROKEN_REGEXES = (
    "", "(", ")", "[", "]", "*", "a**", "+a", "a{2,1}", "a{,}", "\\", "(?P<x>a)(?P=x)", "(a)\\1", "(?=a)a",
    "(?<!a)b", "^a$", r"\b", "a{99999999999999999999999999999}", "[z-a]", "(?i)a", "\\p{L}", "(" * 200,
    "a{1" + "0" * 400 + "}",
)

# Classic catastrophic-backtracking patterns (for stop_regex, searched by a backtracking engine).
BACKTRACKING_REGEXES = (r"(\w*)*!", r"(.*)*\d", r"(a|aa)*b", r"(x+x+)+y", r"(.*?,){30}\x00", r"(.*?\S){40}\x00",
                        r"^(([a-z])+.)+[A-Z]([a-z])+$", r"(?:\s*\S*)*\x00")

JSON_FORMATS = ("date", "date-time", "time", "email", "uuid", "ipv4", "ipv6", "uri", "hostname", "bogus")
BROKEN_SCHEMAS: List[Any] = [
    {"type": "banana"}, {"type": 5}, {"$ref": "#/nope"}, {"$ref": "http://example.com/x.json"},
    {"type": "array", "minItems": -1}, {"type": "string", "maxLength": -5}, {"type": "string", "minLength": 3, "maxLength": 2},
    {"type": "integer", "minimum": 5, "maximum": 1}, {"properties": 5}, {"required": "x"}, {"enum": []},
    {"allOf": []}, {"anyOf": [{"type": "string"}, 3]}, {"type": "object", "properties": {"a": {"type": "nope"}}},
    {"type": "string", "pattern": "("}, {"type": "string", "pattern": "[^\\s\\S]"}, [], "x", 5, None, True, False,
]


def counts() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, 6), st.sampled_from(HUGE_COUNTS))


@st.composite
def _bounded(draw: st.DrawFn) -> str:
    low, high = draw(counts()), draw(st.one_of(counts(), st.none()))
    shape = draw(st.sampled_from(("{n}", "{n,}", "{n,m}", "{,m}")))
    if shape == "{n}" or (high is None and shape != "{n,}"):
        return f"{{{low}}}"
    if shape == "{n,}":
        return f"{{{low},}}"
    if shape == "{,m}":
        return f"{{,{high}}}"
    return f"{{{low},{high}}}"


def _quantifier() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(REGEX_QUANTIFIERS), _bounded())


def _regex_atom() -> st.SearchStrategy[str]:
    literal = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=3).map(re.escape)
    return st.one_of(st.sampled_from(REGEX_ATOMS), literal)


def _regex_extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    group = st.sampled_from(("({})", "(?:{})"))
    return st.one_of(
        st.tuples(group, inner, _quantifier()).map(lambda t: t[0].format(t[1]) + t[2]),
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.tuples(group, st.lists(inner, min_size=2, max_size=3)).map(lambda t: t[0].format("|".join(t[1]))),
    )


NEST_DEPTHS = (20, 60, 200, 1000, 5000)  # parsers that recurse per level must refuse, not overflow


def _deep_regex() -> st.SearchStrategy[str]:
    shapes = st.sampled_from(("({})", "(?:{})*", "({}|b)", "[a]{{0,2}}{}"))
    return st.builds(lambda shape, n: _nest(shape, n, "a"), shapes, st.sampled_from(NEST_DEPTHS))


def _nest(shape: str, depth: int, core: str) -> str:
    head, tail = shape.split("{}")
    return head.replace("{{", "{").replace("}}", "}") * depth + core + tail * depth


def regexes() -> st.SearchStrategy[str]:
    tree = st.recursive(_regex_atom(), _regex_extend, max_leaves=8)
    return st.one_of(tree, tree, tree, st.sampled_from(BROKEN_REGEXES), st.sampled_from(BACKTRACKING_REGEXES),
                     _deep_regex(), st.text(max_size=12))


# ---------------------------------------------------------------------------------- JSON schema
def _numbers() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(-10, 10), st.sampled_from([-(10**30), 10**30, 2**63, 0.5, -1e308, 1e308]))


def _leaf_schemas() -> st.SearchStrategy[Any]:
    string = st.fixed_dictionaries({"type": st.just("string")}, optional={
        "minLength": counts(), "maxLength": counts(), "pattern": regexes(), "format": st.sampled_from(JSON_FORMATS),
        "enum": st.lists(st.text(max_size=4), min_size=1, max_size=3)})
    number = st.fixed_dictionaries({"type": st.sampled_from(("integer", "number"))}, optional={
        "minimum": _numbers(), "maximum": _numbers(), "exclusiveMinimum": _numbers(), "multipleOf": _numbers()})
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4))
    return st.one_of(string, number, st.sampled_from([{"type": "boolean"}, {"type": "null"}, {}, True, False]),
                     st.builds(lambda v: {"enum": v}, st.lists(scalar, min_size=1, max_size=3)),
                     st.builds(lambda v: {"const": v}, scalar))


@st.composite
def _object_schema(draw: st.DrawFn, inner: st.SearchStrategy[Any]) -> Dict[str, Any]:
    props = draw(st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3))
    schema: Dict[str, Any] = {"type": "object", "properties": props}
    if props and draw(st.booleans()):
        schema["required"] = draw(st.lists(st.sampled_from(sorted(props)), unique=True))
    extra = draw(st.sampled_from(("none", "false", "true", "schema", "min")))
    if extra == "schema":
        schema["additionalProperties"] = draw(inner)
    elif extra in ("false", "true"):
        schema["additionalProperties"] = extra == "true"
    elif extra == "min":
        schema["minProperties"] = draw(counts())
    return schema


def _schema_extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    array = st.fixed_dictionaries({"type": st.just("array"), "items": inner}, optional={
        "minItems": counts(), "maxItems": counts(), "uniqueItems": st.booleans(),
        "prefixItems": st.lists(inner, max_size=2)})
    combined = st.tuples(st.sampled_from(("anyOf", "oneOf", "allOf")), st.lists(inner, min_size=1, max_size=3))
    return st.one_of(array, _object_schema(inner), combined.map(lambda t: {t[0]: t[1]}))


@st.composite
def _cyclic_schema(draw: st.DrawFn) -> Dict[str, Any]:
    """A `$ref` cycle: linked lists and trees (finite when the link is optional), a required
    link (an empty language: every value would be infinite), or a reference to itself only."""
    link = {"$ref": "#/$defs/node"}
    shape = draw(st.sampled_from(("list", "required", "tree", "self", "root", "array")))
    if shape == "self":
        node: Any = link
    elif shape == "root":
        return {"type": "object", "properties": {"child": {"$ref": "#"}}, "required": draw(st.sampled_from([[], ["child"]]))}
    elif shape == "array":
        node = {"type": "array", "items": link, "minItems": draw(counts())}
    else:
        node = {"type": "object", "properties": {"value": draw(_leaf_schemas()), "next": link}}
        if shape == "tree":
            node["properties"]["more"] = {"type": "array", "items": link}
        if shape == "required":
            node["required"] = ["value", "next"]
    return {"$defs": {"node": node}, "$ref": "#/$defs/node"}


def _deep_schema(depth: int) -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "integer"}
    for level in range(depth):
        schema = {"type": "array", "items": schema} if level % 2 else {"type": "object", "properties": {"k": schema}}
    return schema


def json_schemas() -> st.SearchStrategy[Any]:
    """Schemas as Python values (serialize with json.dumps); some are not valid schemas."""
    tree = st.recursive(_leaf_schemas(), _schema_extend, max_leaves=6)
    deep = st.sampled_from(NEST_DEPTHS[:3]).map(_deep_schema)  # deeper ones make json.dumps recurse too far
    return st.one_of(tree, tree, tree, _cyclic_schema(), st.sampled_from(BROKEN_SCHEMAS), deep)


def json_schema_strings() -> st.SearchStrategy[str]:
    """The `json_schema` sampling parameter: a serialized schema, or text that is not one."""
    return st.one_of(json_schemas().map(json.dumps), json_schemas().map(json.dumps),
                     st.sampled_from(["", "{", "{not json", "null", "[]", '"x"']), st.text(max_size=10))


# ---------------------------------------------------------------------------------- EBNF
EBNF_GRAMMARS = (
    'root ::= "yes" | "no"', 'root ::= [a-z]+', 'root ::= "a" root | "b"', 'root ::= item ("," item)*\nitem ::= [0-9]+',
    'root ::= root', 'root ::= "a" root', 'root ::= x\nx ::= "y" x', 'root ::= [^\\s\\S]', 'root ::= ""',
    "", "root ::=", 'nonroot ::= "a"', "root ::= undefined_rule", 'root ::= "unclosed', "::=", 'root ::= ("a"',
)


@st.composite
def _ebnf_repetition(draw: st.DrawFn) -> str:
    body = draw(st.sampled_from(('"a"', "[a-z]", '("ab" | "c")', '("x"{2,3})', "[^\\s\\S]")))
    inner = draw(_bounded())
    outer = draw(st.one_of(st.just(""), _bounded()))
    return f"root ::= ({body}{inner}){outer}"


def ebnfs() -> st.SearchStrategy[str]:
    deep = st.sampled_from(NEST_DEPTHS).map(lambda n: "root ::= " + _nest('("a" {})?', n, '"b"'))
    return st.one_of(st.sampled_from(EBNF_GRAMMARS), _ebnf_repetition(), deep, st.text(max_size=16))
