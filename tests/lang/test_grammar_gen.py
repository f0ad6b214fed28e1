"""`sgl.gen(..., ebnf=...)` and `sgl.gen(..., lark=...)`: the fields reach the runtime's
sampling params, only one constraint per gen, the official OpenAI API refuses them clearly, and
programs on the in-process engine (lark backend, tiny model) produce text the grammar accepts."""

from __future__ import annotations

from typing import Iterator

import pytest
from lark import Lark

import sglang as sgl
from sglang.lang.backend.engine_backend import EngineBackend
from sglang.lang.backend.openai_params import request_kwargs
from sglang.lang.ir import SglSamplingParams
from sglang.testing.fixtures import tiny_model_dir

EBNF = 'root ::= "(" item ("," item){0,2} ")"\nitem ::= [a-c] | "nil"'
LARK = 'start: "[" ITEM (";" ITEM)* "]"\nITEM: /[0-9]{1,2}/\n'


@pytest.mark.parametrize("field,grammar", [("ebnf", EBNF), ("lark", LARK)])
def test_gen_passes_the_grammar_to_runtime_params(field, grammar):
    params = sgl.gen("x", max_tokens=8, **{field: grammar}).sampling_params
    assert params.runtime_sampling_params()[field] == grammar
    assert params.is_constrained()


def test_gen_takes_one_constraint():
    with pytest.raises(ValueError, match="regex and ebnf"):
        sgl.gen("x", regex="a", ebnf=EBNF)
    with pytest.raises(ValueError, match="ebnf and lark"):
        sgl.gen("x", ebnf=EBNF, lark=LARK)


@pytest.mark.parametrize("field", ["ebnf", "lark"])
def test_openai_backend(field):
    params = SglSamplingParams(**{field: "g"})
    with pytest.raises(ValueError, match=f"{field} is not supported by the official OpenAI API.*SGLang endpoint"):
        request_kwargs(params, model="gpt-4o", chat=True, official=True)
    ours = request_kwargs(params, model="m", chat=True, official=False)
    assert ours["extra_body"] == {field: "g"}  # an SGLang server takes it as an extension


@pytest.fixture(scope="module")
def engine_backend() -> Iterator[EngineBackend]:
    backend = EngineBackend(model_path=tiny_model_dir("llama"), device="cpu", random_seed=0,
                            max_total_tokens=4096, grammar_backend="lark")
    yield backend
    backend.shutdown()


@sgl.function
def _program(s, ebnf=None, lark=None):
    s += "Answer: " + sgl.gen("out", max_tokens=40, temperature=1.0, ebnf=ebnf, lark=lark)


def test_programs_on_the_engine_follow_the_grammar(engine_backend):
    from sglang.runtime.constrained.ebnf_to_lark import to_lark_natural

    judges = {"ebnf": Lark(to_lark_natural(EBNF), parser="earley"), "lark": Lark(LARK, parser="earley")}
    args = [{"ebnf": EBNF}] * 4 + [{"lark": LARK}] * 4
    states = _program.run_batch(args, backend=engine_backend)
    for arg, state in zip(args, states):
        (field,) = arg
        text = state["out"]
        if state.get_meta_info("out")["finish_reason"]["type"] == "stop":
            judges[field].parse(text)
        else:
            assert text[:1] == ("(" if field == "ebnf" else "["), text
