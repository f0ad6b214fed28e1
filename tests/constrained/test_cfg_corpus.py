"""Issue 22's grammar-level acceptance: 32 random walks per (grammar, backend) over the whole EBNF
corpus (cfg_specs: JSON, arithmetic, SQL-like, nested lists, ...), under both xgrammar and the lark
backend, every text accepted by lark's Earley parser on the grammar's natural translation (code
shared with neither backend's matcher)."""

from __future__ import annotations

import random
import zlib

import pytest

from sglang.runtime.constrained.registry import create_backend
from tests.constrained.cfg_specs import CFG_SPECS, CFGSpec
from tests.constrained.conftest import MODEL_VOCAB
from tests.constrained.walk import random_walk

WALKS = 32
BACKENDS = ("xgrammar", "lark")


@pytest.fixture(scope="module")
def backends(tokenizer, eos_ids):
    return {name: create_backend(name, tokenizer, MODEL_VOCAB, eos_token_ids=eos_ids) for name in BACKENDS}


def test_corpus_size_and_coverage():
    names = {s.name for s in CFG_SPECS}
    assert len(CFG_SPECS) >= 30 and len(names) == len(CFG_SPECS)
    for needed in ("json_like", "arith", "sql_like", "nested_lists"):
        assert needed in names


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", CFG_SPECS, ids=lambda s: s.name)
def test_walks_are_valid(spec: CFGSpec, backend: str, backends, vocab):
    compiled = backends[backend].compile("ebnf", spec.grammar)
    rng = random.Random(zlib.crc32(f"{backend}/{spec.name}".encode()))
    texts = set()
    for _ in range(WALKS):
        result = random_walk(compiled.copy(), vocab, rng, max_steps=400, explore_steps=30)
        assert result.terminated, f"walk did not finish: {result.text!r}"
        spec.check(result.text)
        texts.add(result.text)
    if spec.name != "forced_prefix":
        assert len(texts) > 1, texts


@pytest.mark.parametrize("grammar,where", [
    # " and"/" or" share their first character: a shift/reduce conflict at character level
    ('root ::= disj\ndisj ::= conj (" or " conj)*\nconj ::= atom (" and " atom)*\natom ::= [xyz]', "' '"),
    # after "2": reduce it to [1-9] or keep it as the literal "2": a shift/reduce conflict
    ('root ::= octet "." octet\noctet ::= [1-9] [0-9] | "2" [0-4] [0-9]', "Shift/Reduce"),
])
def test_shift_reduce_conflicts_are_refused_not_resolved_as_shift(grammar, where, backends):
    """lark resolves shift/reduce conflicts as shifts unless strict: masks would then refuse valid
    text (' or' after an atom). The lark backend must refuse such grammars instead."""
    with pytest.raises(ValueError, match="not LALR") as info:
        backends["lark"].compile("ebnf", grammar)
    assert where in str(info.value)
