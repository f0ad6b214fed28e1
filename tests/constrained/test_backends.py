"""The grammar-object contract, checked identically on both backends."""

from __future__ import annotations

import re

import pytest
import torch

from sglang.runtime.constrained.registry import backend_class, create_backend

BACKENDS = ["fsm", "xgrammar"]


def _allowed(grammar, width: int) -> set:
    mask = torch.ones(width, dtype=torch.bool)  # stale True values must be overwritten
    grammar.fill_allowed_mask(mask)
    return set(mask.nonzero().flatten().tolist())


def _ids(tokenizer, text: str) -> list:
    return tokenizer.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eos_only_where_the_grammar_may_end(backend, compiled, tokenizer, eos_ids, vocab) -> None:
    grammar = compiled(backend, "regex", "ab(cd)?")
    assert not _allowed(grammar, vocab.vocab_size) & eos_ids
    eos = min(eos_ids)
    assert not grammar.accept_token(eos)  # refused, state unchanged
    assert grammar.accept_tokens([_ids(tokenizer, "a")[0], _ids(tokenizer, "b")[0]])
    allowed = _allowed(grammar, vocab.vocab_size)
    assert eos_ids <= allowed and _ids(tokenizer, "c")[0] in allowed  # may end or go on
    assert not grammar.is_terminated()
    cd_ids = _ids(tokenizer, "cd")
    assert grammar.accept_tokens(cd_ids)
    assert grammar.is_terminated()  # complete, and nothing but EOS may follow
    assert _allowed(grammar, vocab.vocab_size) == set(eos_ids)
    assert grammar.accept_token(eos) and grammar.is_terminated()
    assert _allowed(grammar, vocab.vocab_size) == set(eos_ids)
    assert not grammar.accept_token(_ids(tokenizer, "a")[0])
    grammar.rollback(1 + len(cd_ids))  # EOS and "cd": back to "ab"
    assert not grammar.is_terminated() and eos_ids <= _allowed(grammar, vocab.vocab_size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rejected_token_leaves_state_unchanged(backend, compiled, tokenizer, vocab) -> None:
    grammar = compiled(backend, "regex", "[0-9]+x")
    before = _allowed(grammar, vocab.vocab_size)
    assert not grammar.accept_token(_ids(tokenizer, "x")[0])
    assert not grammar.accept_token(vocab.vocab_size - 1)  # padding id
    assert not grammar.accept_tokens(_ids(tokenizer, "12") + _ids(tokenizer, "q"))  # all or nothing
    assert _allowed(grammar, vocab.vocab_size) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_rollback_restores_earlier_masks(backend, compiled, tokenizer, vocab) -> None:
    grammar = compiled(backend, "json", '{"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]}')
    tokens = _ids(tokenizer, '{"k": 12')
    masks = [_allowed(grammar, vocab.vocab_size)]
    for tid in tokens:
        assert grammar.accept_token(tid)
        masks.append(_allowed(grammar, vocab.vocab_size))
    grammar.rollback(3)
    assert _allowed(grammar, vocab.vocab_size) == masks[-4]
    grammar.rollback(0)
    assert _allowed(grammar, vocab.vocab_size) == masks[-4]
    with pytest.raises(ValueError, match="cannot roll back"):
        grammar.rollback(len(tokens))  # only len(tokens) - 3 remain accepted
    assert grammar.accept_tokens(tokens[-3:])
    assert _allowed(grammar, vocab.vocab_size) == masks[-1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_copy_is_fresh_and_independent(backend, compiled, tokenizer, vocab) -> None:
    grammar = compiled(backend, "regex", "(yes|no)!")
    start = _allowed(grammar, vocab.vocab_size)
    assert grammar.accept_tokens(_ids(tokenizer, "yes"))
    twin = grammar.copy()
    assert _allowed(twin, vocab.vocab_size) == start
    assert twin.accept_tokens(_ids(tokenizer, "no"))
    assert _allowed(grammar, vocab.vocab_size) == {_ids(tokenizer, "!")[0]}


@pytest.mark.parametrize(
    "backend,kind,spec,message",
    [
        ("fsm", "regex", "(ab", "invalid regex"),
        ("xgrammar", "regex", "(ab", "parenthesis is not closed"),
        ("fsm", "json", '{"type": "foo"}', "invalid JSON schema"),
        ("xgrammar", "json", '{"type": "foo"}', "invalid JSON schema"),
        ("xgrammar", "json", "{bad", "not valid JSON"),
        ("xgrammar", "ebnf", "root ::= foo", 'Rule "foo" is not defined'),
        ("xgrammar", "ebnf", 'root ::= "a', "ebnf"),
        # xgrammar's message cuts the non-ASCII character it quotes (it failed to decode)
        ("xgrammar", "ebnf", 'root ::= "a" | 中', "Unexpected character"),
        ("xgrammar", "ebnf", "\u0094\u00b7", "EBNF lexer error at line 1"),
        ("fsm", "ebnf", 'root ::= "a"', "--grammar-backend xgrammar"),
        ("fsm", "yaml", "a: 1", "unknown grammar kind"),
    ],
)
def test_invalid_specs_raise_value_error(backend, kind, spec, message, backends) -> None:
    with pytest.raises(ValueError, match=message):
        backends[backend].compile(kind, spec)


def test_disabled_backend_and_bad_backend_names(tokenizer) -> None:
    disabled = create_backend("none", tokenizer, 1000)
    with pytest.raises(ValueError, match="--grammar-backend none"):
        disabled.compile("regex", "a")
    with pytest.raises(ValueError, match="unknown grammar backend 'outlines'"):
        backend_class("outlines")
    with pytest.raises(ValueError, match="vocab_size must be"):
        create_backend("fsm", tokenizer, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tokenizer_ids_beyond_the_model_vocab_are_never_allowed(backend, tokenizer, vocab) -> None:
    small = create_backend(backend, tokenizer, 300, eos_token_ids=[5])
    grammar = small.compile("regex", "[a-z ]+")
    allowed = _allowed(grammar, 300)
    assert allowed and max(allowed) < 300
    word = next(t for t in range(300, 900) if vocab.token_bytes[t] and re.fullmatch(rb"[a-z]+", vocab.token_bytes[t]))
    assert not grammar.accept_token(word)  # fits the regex, but the model cannot emit it


def test_generic_json_object_spec(compiled, tokenizer, vocab) -> None:
    """'{"type": "object"}' is the generic JSON-object constraint (response_format json_object)."""
    for backend in BACKENDS:
        grammar = compiled(backend, "json", '{"type": "object"}')
        assert grammar.accept_tokens(_ids(tokenizer, '{"a": [1, 2], "b": "c"}'))
        assert min(vocab.eos_ids) in _allowed(grammar, vocab.vocab_size)


@pytest.mark.parametrize("backend", BACKENDS)
def test_json_strings_never_allow_raw_control_characters(backend, compiled, tokenizer, vocab) -> None:
    for schema in ('{"type": "string", "maxLength": 5}', '{"type": "string"}'):
        grammar = compiled(backend, "json", schema)
        assert grammar.accept_tokens(_ids(tokenizer, '"'))
        for tid in _allowed(grammar, vocab.vocab_size) - vocab.eos_ids:
            assert min(vocab.token_bytes[tid]) >= 0x20, (schema, vocab.token_bytes[tid])


def test_fsm_whitespace_pattern_option(tokenizer) -> None:
    compact = create_backend("fsm", tokenizer, 1000, whitespace_pattern="")
    grammar = compact.compile("json", '{"type": "array", "items": {"type": "null"}}')
    assert not grammar.accept_tokens(_ids(tokenizer, "[ null]"))
    assert grammar.accept_tokens(_ids(tokenizer, "[null,null]")) and grammar.is_terminated()
