"""Measuring grammars before compiling: regexes on Python's parse tree, xgrammar's EBNF print."""

from __future__ import annotations

import pytest

from sglang.runtime.constrained.ebnf_measure import EBNFMeasureError, measure_ebnf
from sglang.runtime.constrained.regex_measure import measure_regex


def test_regex_measure_multiplies_nested_counts() -> None:
    m = measure_regex("(ab{2,5}|c){10}d*")
    assert m.positions == 10 * (1 + 5 + 1) + 1
    assert m.forced == 10 * 3 + 1
    assert m.largest_count == 10
    with pytest.raises(ValueError, match="invalid regex"):
        measure_regex("(unclosed")


def test_ebnf_measure() -> None:
    m = measure_ebnf('root ::= "ab" item{3, 7} ("x" | "yyy")\nitem ::= [a-c] "-"')
    assert m.productive and m.forced == 2 + 3 * 2 + 3 and m.recursive_forced == 0 and m.largest_count == 3
    rec = measure_ebnf('root ::= (("[" root "]") | ("x"))')
    assert rec.productive and rec.recursive_forced == 2
    assert not measure_ebnf(r'root ::= (("a" [^\0-\U0010ffff]))').productive
    assert measure_ebnf(r'root ::= (([^\0-\x1f\"\\]))').productive
    assert measure_ebnf('root ::= Regex("^x{7}$", json_string=true)').forced == 7
    with pytest.raises(EBNFMeasureError):
        measure_ebnf('root ::= TagDispatch(("a", b))\nb ::= "x"')
