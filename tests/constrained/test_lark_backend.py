"""The lark grammar backend: random walks give text lark's own Earley parser accepts, the masks
equal xgrammar's along the same walks, rollback/jump-forward work, bad grammars are refused."""

from __future__ import annotations

import random
import zlib

import pytest
import torch

from hypothesis import given
from hypothesis import strategies as st

from sglang.runtime.constrained.registry import create_backend
from tests.constrained.cfg_specs import CFG_SPECS, CFGSpec
from tests.constrained.conftest import MODEL_VOCAB
from tests.constrained.walk import check_mask, random_walk

WALKS = 12


@pytest.fixture(scope="module")
def lark_backend(tokenizer, eos_ids):
    return create_backend("lark", tokenizer, MODEL_VOCAB, eos_token_ids=eos_ids)


@pytest.fixture(scope="module")
def xgr_backend(tokenizer, eos_ids):
    return create_backend("xgrammar", tokenizer, MODEL_VOCAB, eos_token_ids=eos_ids)


def test_suite_size():
    assert len(CFG_SPECS) >= 10


@pytest.mark.parametrize("spec", CFG_SPECS, ids=lambda s: s.name)
def test_walks_parse_and_masks_match_xgrammar(spec: CFGSpec, lark_backend, xgr_backend, vocab):
    ours, theirs = lark_backend.compile("ebnf", spec.grammar), xgr_backend.compile("ebnf", spec.grammar)
    rng = random.Random(zlib.crc32(spec.name.encode()))
    a, b = torch.zeros(MODEL_VOCAB, dtype=torch.bool), torch.zeros(MODEL_VOCAB, dtype=torch.bool)
    texts = set()
    for _ in range(WALKS):
        result = random_walk(ours.copy(), vocab, rng, max_steps=120, explore_steps=30)
        assert result.terminated, f"walk did not finish: {result.text!r}"
        spec.check(result.text)
        texts.add(result.text)
        mine, other = ours.copy(), theirs.copy()
        for step, tid in enumerate(result.ids):  # replay: the two masks agree at every step
            mine.fill_allowed_mask(a)
            other.fill_allowed_mask(b)
            for t in (a != b).nonzero().flatten().tolist()[:4]:
                _resolve(spec, result.ids[:step], t, bool(a[t]), ours if a[t] else theirs, vocab, rng)
            assert mine.accept_token(tid) and other.accept_token(tid)
        assert mine.is_terminated() and other.is_terminated()
    if spec.name != "forced_prefix":
        assert len(texts) > 1


def _resolve(spec: CFGSpec, prefix, tid: int, ours_allows: bool, allower, vocab, rng) -> None:
    """The masks differ on `tid`: the side allowing it completes a walk through it, and lark's
    Earley parser judges the text. Our side must be the right one. (xgrammar 0.2.9 leaves some
    valid multi-character tokens out of its mask, e.g. '))' after '((' in `balanced`.)"""
    grammar = allower.copy()
    assert grammar.accept_tokens(list(prefix) + [tid])
    text = random_walk(grammar, vocab, rng, max_steps=120, explore_steps=0).text
    tail = vocab.decode(list(prefix) + [tid])
    try:
        spec.check(tail + text)
        valid = True
    except Exception:
        valid = False
    side = "lark backend" if ours_allows else "xgrammar"
    assert valid == ours_allows, f"{side} allows {vocab.token_bytes[tid]!r} after {vocab.decode(list(prefix))!r}; " \
        f"completion {tail + text!r} {'parses' if valid else 'does not parse'}"


def test_rollback_restores_masks(lark_backend, vocab):
    grammar = lark_backend.compile("ebnf", CFG_SPECS[4].grammar)  # json_like
    rng = random.Random(7)
    masks, ids = [], []
    row = torch.zeros(MODEL_VOCAB, dtype=torch.bool)
    for _ in range(15):
        grammar.fill_allowed_mask(row)
        masks.append(row.clone())
        allowed = [t for t in row.nonzero().flatten().tolist() if t not in vocab.eos_ids]
        if not allowed:
            break
        ids.append(rng.choice(allowed))
        assert grammar.accept_token(ids[-1])
    for k in (1, 3, 5):
        grammar.rollback(k)
        grammar.fill_allowed_mask(row)
        assert torch.equal(row, masks[len(ids) - k])
        assert grammar.accept_tokens(ids[len(ids) - k:])
    with pytest.raises(ValueError):
        grammar.rollback(len(ids) + 1)


def test_rejects_tokens_outside_mask(lark_backend, vocab):
    grammar = lark_backend.compile("ebnf", 'root ::= "yes" | "no"')
    row = torch.zeros(MODEL_VOCAB, dtype=torch.bool)
    grammar.fill_allowed_mask(row)
    check_mask(row.nonzero().flatten().tolist(), vocab)
    for tid in range(len(vocab.tokenizer)):
        if not row[tid]:
            assert not grammar.accept_token(tid)
    assert grammar.num_accepted == 0


def test_jump_forward(lark_backend):
    grammar = lark_backend.compile("ebnf", 'root ::= "The answer is: " ("yes" | "no") "."')
    assert grammar.try_jump_forward() == "The answer is: "
    assert grammar.try_jump_forward(4) == "The "
    unforced = lark_backend.compile("ebnf", 'root ::= "a" | "b"')
    assert unforced.try_jump_forward() is None


@pytest.mark.parametrize("grammar,where", [
    ('root ::= "a" (', "line 1, column 15"),
    ('root ::= "a"\nitem ::= "b" @', "line 2, column 14"),
    ('root ::= item\nitem ::= "b" | other', "line 2, column 16"),
    ('root ::= "a\n"', "line 1, column 10"),
    ('item ::= "a"', "no 'root' rule"),
    ('root ::= "x" loop\nloop ::= "y" loop', "'loop' can never finish"),
    ('root ::= [a-z]{1,100000}', "over the lark backend's limit"),
])
def test_malformed_grammar_names_line_and_column(lark_backend, grammar, where):
    with pytest.raises(ValueError, match=where):
        lark_backend.compile("ebnf", grammar)


def test_non_lalr_grammar_is_refused_naming_the_conflict(lark_backend):
    with pytest.raises(ValueError, match="not LALR.*collision") as info:
        lark_backend.compile("ebnf", 'root ::= a "xy" | b "xz"\na ::= "q"\nb ::= "q"')
    assert "<a : <char 'q'>>" in str(info.value) and "<b : <char 'q'>>" in str(info.value)


def test_rule_names_lark_reserves_are_renamed(lark_backend):
    grammar = lark_backend.compile("ebnf", 'root ::= Item-x start\nItem-x ::= "a"\nstart ::= "b"')
    assert grammar.try_jump_forward() == "ab"


def test_regex_and_json_go_to_fsm(lark_backend, vocab):
    grammar = lark_backend.compile("regex", "(ab|cd)[0-9]")
    assert grammar.try_jump_forward() is None
    assert lark_backend.compile("json", '{"type": "boolean"}').copy() is not None


def test_mask_cache_is_bounded_and_eviction_keeps_masks_right(tokenizer, eos_ids, vocab):
    backend = create_backend("lark", tokenizer, MODEL_VOCAB, eos_token_ids=eos_ids)
    spec = CFG_SPECS[4]  # json_like
    grammar = backend.compile("ebnf", spec.grammar)
    grammar.compiled._cache_ids = 50  # a few states' worth
    for seed in range(4):
        result = random_walk(grammar.copy(), vocab, random.Random(seed), max_steps=120, explore_steps=30)
        assert result.terminated
        spec.check(result.text)
    assert grammar.compiled._cached_ids <= 50 or len(grammar.compiled._masks) == 1


@pytest.mark.parametrize("spec", CFG_SPECS, ids=lambda s: s.name)
def test_vectorized_masks_equal_the_trie_walk(spec: CFGSpec, lark_backend, vocab):
    """The numpy token index (loop cells in bulk) and the plain trie walk agree in every state."""
    grammar = lark_backend.compile("ebnf", spec.grammar)
    compiled = grammar.compiled
    rng = random.Random(zlib.crc32(spec.name.encode()) + 1)
    for _ in range(4):
        walker = grammar.copy()
        ids = random_walk(walker, vocab, rng, max_steps=60, explore_steps=30).ids
        replay = grammar.copy()
        for tid in ids:
            state = replay.state
            if state is None:
                break
            assert compiled.allowed(state).tolist() == compiled.walk_ids(state).tolist()
            assert replay.accept_token(tid)


@given(st.integers(0, 0x10FFFF).filter(lambda c: not 0xD800 <= c <= 0xDFFF))
def test_lead_byte_range_holds_every_character_it_begins(cp):
    from sglang.runtime.constrained.lark_token_index import _lead_range

    first = chr(cp).encode("utf-8")[0]
    lo, hi = _lead_range(first)
    assert lo <= cp <= hi
    # ranges of different lead bytes never overlap: the prefilter is tight, not just a superset
    assert all(_lead_range(b) is None or _lead_range(b)[1] < lo or _lead_range(b)[0] > hi
               for b in range(256) if b != first)


def test_continuation_and_invalid_bytes_begin_no_character():
    from sglang.runtime.constrained.lark_token_index import _lead_range

    assert all(_lead_range(b) is None for b in [*range(0x80, 0xC2), *range(0xF5, 0x100)])


def test_masks_are_shared_across_nesting_depths_and_stay_exact(lark_backend, tokenizer):
    """A mask is cached under the stack entries its computation read: the same local context at
    another nesting depth is a hit, and the masks served equal a fresh trie walk at every depth."""
    grammar = lark_backend.compile("ebnf", 'root ::= expr\nexpr ::= term (("+" | "*") term)*\n'
                                           'term ::= [0-9]+ | "(" expr ")"')
    compiled = grammar.compiled
    sizes = []
    for depth in range(1, 7):
        g = grammar.copy()
        for tid in tokenizer.encode("(" * depth + "1+", add_special_tokens=False):
            assert g.accept_token(tid)
        before = len(compiled._masks)
        assert compiled.allowed(g.state).tolist() == compiled.walk_ids(g.state).tolist()
        sizes.append(len(compiled._masks) - before)
    assert sizes[-3:] == [0, 0, 0], sizes  # deeper nestings reuse the cached mask
