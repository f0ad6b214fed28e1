"""`--grammar-backend lark` end to end through the Engine: EBNF at temperature 1 on the tiny
model gives only outputs that lark's own Earley parser accepts; a malformed grammar is refused
naming its line and column while the engine keeps serving."""

from __future__ import annotations

import pytest

import sglang
from sglang.testing.fixtures import tiny_model_dir
from tests.constrained.cfg_specs import CFG_SPECS, CFGSpec

SAMPLES = 16
# Bounded grammars: every path ends well within max_new_tokens, so each sample must be complete.
BOUNDED = [s for s in CFG_SPECS if s.name in ("bounded_repeat", "forced_prefix")] + [
    CFGSpec("json_pairs", 'root ::= "{" pair ("," pair){0,2} "}"\npair ::= "\\"" [a-z]{1,5} "\\":" [0-9]{1,3}'),
    CFGSpec("nested", 'root ::= "(" inner ")"\ninner ::= "()" | "[]" | "{}"'),
]


@pytest.fixture(scope="module")
def engine():
    with sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu", random_seed=0,
                       grammar_backend="lark") as eng:
        yield eng


@pytest.mark.parametrize("spec", BOUNDED, ids=lambda s: s.name)
def test_every_sample_is_valid(engine, spec: CFGSpec):
    params = [{"max_new_tokens": 120, "temperature": 1.0, "seed": i, "ebnf": spec.grammar} for i in range(SAMPLES)]
    outs = engine.generate(["Answer:"] * SAMPLES, params)
    for out in outs:
        assert out["meta_info"]["finish_reason"]["type"] == "stop", out["meta_info"]["finish_reason"]
        spec.check(out["text"])
    if spec.name != "forced_prefix":
        assert len({o["text"] for o in outs}) > 1


def test_malformed_grammar_is_refused_with_line_and_column(engine):
    out = engine.generate("x", {"max_new_tokens": 4, "ebnf": 'root ::= "a"\nitem ::= "b" @'})
    reason = out["meta_info"]["finish_reason"]
    assert reason["type"] == "abort" and reason["status_code"] == 400, reason
    assert "line 2, column 14" in reason["message"], reason
    assert engine.generate("x", {"max_new_tokens": 2, "temperature": 0})["text"] is not None


LARK_LIST = r'''
start: "[" [ITEM ("," ITEM)*] "]"
ITEM: /[a-c]{1,3}/ | "nil"
'''


def test_lark_syntax_field_end_to_end(engine):
    from lark import Lark

    judge = Lark(LARK_LIST, parser="earley")
    params = [{"max_new_tokens": 60, "temperature": 1.0, "seed": i, "lark": LARK_LIST} for i in range(8)]
    for out in engine.generate(["List:"] * 8, params):
        if out["meta_info"]["finish_reason"]["type"] == "stop":
            judge.parse(out["text"])
        else:  # cut by length: still a prefix the grammar allows
            assert out["text"].startswith("[")


def test_malformed_lark_grammar_is_refused_with_line_and_column(engine):
    out = engine.generate("x", {"max_new_tokens": 4, "lark": 'start: "a"\nfoo: "b" (\n'})
    reason = out["meta_info"]["finish_reason"]
    assert reason["type"] == "abort" and reason["status_code"] == 400, reason
    assert "Lark grammar error" in reason["message"] and "line 2 column" in reason["message"], reason
