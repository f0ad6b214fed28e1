"""Hostile grammars are refused before compiling; jump-forward asks for a bounded chunk (issue 15
items 1 and 8), on both backends."""

from __future__ import annotations

import json
import time

import pytest

from sglang.runtime.constrained.base_grammar import BaseGrammarObject

BACKENDS = ["fsm", "xgrammar"]
_HUGE_ITEMS = json.dumps({"type": "array", "items": {"const": 1}, "minItems": 10_000_000})

# (kind, spec, backends, words the error must contain: the limit and the offending value)
HOSTILE = [
    ("regex", "a{99999999}", BACKENDS, ["99999999"]),
    ("regex", "((a{1000}){1000}){1000}", BACKENDS, ["1000000000"]),
    ("regex", "(x[0-9]{2}){50000}", BACKENDS, ["50000"]),
    ("json", _HUGE_ITEMS, BACKENDS, ["minItems = 10000000", "MAX_FORCED_CHARS"]),
    ("json", json.dumps({"type": "object", "properties": {"s": {"type": "string", "minLength": 10 ** 8}}}),
     BACKENDS, ["minLength = 100000000", "MAX_FORCED_CHARS"]),
    ("json", json.dumps({"type": "string", "pattern": "^a{99999999}$"}), BACKENDS, ["99999999"]),
    ("ebnf", 'root ::= "a"{99999999}', ["xgrammar"], ["99999999", "MAX_FORCED_CHARS"]),
    ("ebnf", 'root ::= item{1000}\nitem ::= "ab"{1000}', ["xgrammar"], ["2000000", "MAX_FORCED_CHARS"]),
]
_LIMIT_NAMES = ("MAX_FORCED_CHARS", "MAX_FSM_REGEX_POSITIONS")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,spec,supported,words", HOSTILE, ids=[f"{k}-{i}" for i, (k, *_) in enumerate(HOSTILE)])
def test_hostile_repetitions_are_refused_before_compiling(backends, backend, kind, spec, supported, words) -> None:
    if backend not in supported:
        pytest.skip(f"{backend} does not take {kind}")
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        backends[backend].compile(kind, spec)
    message = str(info.value)
    assert time.perf_counter() - start < 5, "refused only after compiling"
    assert any(name in message for name in _LIMIT_NAMES), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,spec", [
    ("regex", r"[^\s\S]"),
    ("regex", r"a[^\d\D]"),
    ("regex", r"(x|y)[^\w\W]z|[^\s\S]"),
    ("json", json.dumps({"type": "string", "pattern": r"^[^\s\S]$"})),
    ("ebnf", 'root ::= "a" root'),
    ("ebnf", 'root ::= "(" inner ")"\ninner ::= "x" inner | "y" inner'),
])
def test_empty_language_is_refused_at_compile_time(backends, backend, kind, spec) -> None:
    if kind == "ebnf" and backend == "fsm":
        pytest.skip("the fsm backend takes no EBNF")
    with pytest.raises(ValueError, match="matches no string"):
        backends[backend].compile(kind, spec)


@pytest.mark.parametrize("backend", BACKENDS)
def test_legitimate_large_grammars_still_compile(backends, backend) -> None:
    """Limits refuse forced text, not size that sampling chooses: a long optional run is fine."""
    specs = [("regex", "[a-z]{0,2000}"),
             ("json", json.dumps({"type": "array", "items": {"type": "integer"}, "minItems": 3}))]
    if backend == "xgrammar":  # compact repetitions: large maxima cost nothing
        specs += [("json", json.dumps({"type": "string", "maxLength": 10 ** 8})), ("regex", "a{60000}")]
    for kind, spec in specs:  # a refused spec raises ValueError
        assert isinstance(backends[backend].compile(kind, spec), BaseGrammarObject), spec


@pytest.mark.parametrize("backend", BACKENDS)
def test_jump_forward_returns_a_bounded_chunk(compiled, backend) -> None:
    from sglang.runtime.constrained.grammar_limits import JUMP_CHUNK_CHARS

    grammar = compiled(backend, "regex", "a{3000}b")
    assert grammar.try_jump_forward(100) == "a" * 100
    assert grammar.try_jump_forward(0) is None
    chunk = grammar.try_jump_forward()
    assert chunk == "a" * JUMP_CHUNK_CHARS


def test_recursive_grammar_stops_native_jumps_when_open_levels_could_force_too_much(compiled, tokenizer) -> None:
    """Each open '[' may add a 4000-character forced closing: after enough of them, xgrammar's
    whole-string jump could exceed MAX_NATIVE_JUMP_CHARS, so no jump is asked for."""
    from sglang.runtime.constrained.grammar_limits import MAX_NATIVE_JUMP_CHARS

    spec = 'root ::= "[" root "]" "a"{4000} | "x"'
    grammar = compiled("xgrammar", "ebnf", spec)
    bracket, x = tokenizer.encode("[", add_special_tokens=False), tokenizer.encode("x", add_special_tokens=False)
    assert grammar.accept_tokens(bracket + x)
    assert grammar.try_jump_forward(10) == "]" + "a" * 9
    deep = compiled("xgrammar", "ebnf", spec)
    levels = MAX_NATIVE_JUMP_CHARS // 4000 + 1
    assert deep.accept_tokens(bracket * levels + x)
    assert deep.try_jump_forward(10) is None
