"""Grammars in Lark's own syntax (`lark` request field): random walks on the lark backend give text
that lark's own Earley parser accepts *on the original Lark grammar* (lexer, %import and %ignore
included), bad grammars are refused naming line/column or the conflict, other backends refuse the
kind naming the flag, and the OpenAI response_format maps to the field."""

from __future__ import annotations

import random
import re
import zlib

import pytest
from lark import Lark

from sglang.runtime.constrained.lark_syntax import lark_to_ebnf, regex_to_ebnf
from sglang.runtime.constrained.registry import create_backend
from sglang.runtime.sampling.sampling_params import SamplingParams
from tests.constrained.conftest import MODEL_VOCAB
from tests.constrained.walk import random_walk

WALKS = 12

LARK_GRAMMARS = {
    "arith_ws": r'''
start: expr
?expr: term (("+"|"-") term)*
?term: NUMBER | "(" expr ")"
%import common.NUMBER
%import common.WS_INLINE
%ignore WS_INLINE
''',
    "kv_lines": r'''
start: pair ("\n" pair)*
pair: KEY "=" VALUE
KEY: /[a-z]{1,5}/
VALUE: /[0-9]+/ | STRING
STRING: "\"" /([^"\\]|\\["\\n])*/ "\""
''',
    "case_insensitive": 'start: ("select"i | "drop"i) " " NAME ";"\nNAME: /[a-z_]{1,6}/\n',
    "list_template": r'''
start: _list{ITEM}
_list{x}: "[" [x ("," x)*] "]"
ITEM: /[abc]/ | "nil"
''',
}


@pytest.fixture(scope="module")
def lark_backend(tokenizer, eos_ids):
    return create_backend("lark", tokenizer, MODEL_VOCAB, eos_token_ids=eos_ids)


@pytest.mark.parametrize("name", sorted(LARK_GRAMMARS))
def test_walks_parse_under_larks_own_parser(name, lark_backend, vocab):
    text_grammar = LARK_GRAMMARS[name]
    judge = Lark(text_grammar, parser="earley")
    compiled = lark_backend.compile("lark", text_grammar)
    rng = random.Random(zlib.crc32(name.encode()))
    texts = set()
    for _ in range(WALKS):
        result = random_walk(compiled.copy(), vocab, rng)
        assert result.terminated, result.text
        judge.parse(result.text)
        texts.add(result.text)
    assert len(texts) > 1


@pytest.mark.parametrize("pattern,good,bad", [
    (r"[a-c]+x?", ["a", "cab", "bx"], ["", "x", "d"]),
    (r"\d{2,3}", ["12", "123"], ["1", "1234", "ab"]),
    (r"(?:ab|c)*\.", [".", "abc.", "cc."], ["a.", "ab"]),
    (r"[^\"\\]", ["a", "é"], ['"', "\\"]),
    (r"\w\s\W", ["a !", "_\t-"], ["ab!", "a b"]),
])
def test_regex_translation_matches_re(pattern, good, bad):
    grammar = Lark(_natural(f"root ::= {regex_to_ebnf(pattern)}"), parser="earley")
    for text in good:
        assert re.fullmatch(pattern, text)
        grammar.parse(text)
    for text in bad:
        assert not re.fullmatch(pattern, text)
        with pytest.raises(Exception):
            grammar.parse(text)


def _natural(ebnf: str) -> str:
    from sglang.runtime.constrained.ebnf_to_lark import to_lark_natural

    return to_lark_natural(ebnf)


@pytest.mark.parametrize("grammar,where", [
    ('start: "a" (\n', "line 1 column 13"),
    ('start: "a" foo\n', "line 1, column 12"),
])
def test_malformed_lark_grammar_names_line_and_column(lark_backend, grammar, where):
    with pytest.raises(ValueError, match="Lark grammar error") as info:
        lark_backend.compile("lark", grammar)
    assert where in str(info.value)


def test_unsupported_regex_construct_is_refused():
    with pytest.raises(ValueError, match="terminal A: .*lookarounds"):
        lark_to_ebnf('start: A\nA: /a(?=b)/\n')


def test_non_lalr_lark_grammar_is_refused_naming_the_conflict(lark_backend):
    with pytest.raises(ValueError, match="not LALR.*(?i:collision|conflict)"):
        lark_backend.compile("lark", 'start: a | b\na: "x" "y"\nb: "x" "y"\n')


def test_other_backends_refuse_lark_naming_the_flag(tokenizer, eos_ids):
    for name in ("xgrammar", "fsm"):
        backend = create_backend(name, tokenizer, MODEL_VOCAB, eos_token_ids=eos_ids)
        with pytest.raises(ValueError, match="--grammar-backend lark"):
            backend.compile("lark", 'start: "a"\n')


def test_lark_field_is_exclusive_with_other_grammars():
    params = SamplingParams(lark='start: "a"\n', regex="a")
    with pytest.raises(ValueError, match="regex, lark"):
        params.verify(100)


def test_openai_response_format_grammar_maps_to_fields():
    from sglang.runtime.entrypoints.openai.errors import APIError
    from sglang.runtime.entrypoints.openai.protocol import ResponseFormat
    from sglang.runtime.entrypoints.openai.sampling import grammar_from_response_format

    for syntax in ("lark", "ebnf"):
        fmt = ResponseFormat(type="grammar", syntax=syntax, grammar="g")
        assert grammar_from_response_format(fmt) == {syntax: "g"}
    with pytest.raises(APIError, match='syntax'):
        grammar_from_response_format(ResponseFormat(type="grammar", syntax="lark"))
