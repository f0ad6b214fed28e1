"""Our regex FSM: UTF-8 byte layer, token index on the real vocabulary, caching, jump-forward."""

from __future__ import annotations

import random
from typing import Optional, Tuple

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.constrained.char_fsm import CharFSM
from sglang.runtime.constrained.utf8_automaton import completion_range
from tests.constrained.specs import SPECS

# ------------------------------------------------------------------ UTF-8 completion ranges


def _extreme_completion(prefix: bytes, descending: bool) -> Optional[str]:
    """Smallest (largest) character whose UTF-8 encoding starts with `prefix`, by search."""
    try:
        text = prefix.decode("utf-8")
        return text if len(text) == 1 else None
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data" or len(prefix) >= 4:
            return None
    order = range(0xBF, 0x7F, -1) if descending else range(0x80, 0xC0)
    for byte in order:
        found = _extreme_completion(prefix + bytes([byte]), descending)
        if found is not None:
            return found
    return None


def _oracle_range(prefix: bytes) -> Optional[Tuple[int, int]]:
    lo, hi = _extreme_completion(prefix, False), _extreme_completion(prefix, True)
    return None if lo is None else (ord(lo), ord(hi))


@settings(max_examples=300, deadline=None)
@given(lead=st.integers(0x80, 0xFF), rest=st.lists(st.integers(0x00, 0xFF), max_size=3))
def test_completion_range_matches_search(lead: int, rest: list) -> None:
    # Mostly continuation bytes, so deep valid prefixes are common; other bytes test rejection.
    prefix = bytes([lead] + [0x80 | (b & 0x3F) if b % 4 else b for b in rest])
    assert completion_range(prefix) == _oracle_range(prefix)


@settings(max_examples=200, deadline=None)
@given(st.characters(min_codepoint=0x80, exclude_categories=("Cs",)))
def test_every_character_prefix_is_kept(ch: str) -> None:
    encoded = ch.encode("utf-8")
    for cut in range(1, len(encoded) + 1):
        lo, hi = completion_range(encoded[:cut])
        assert lo <= ord(ch) <= hi


# ------------------------------------------------------------------ character FSM


def test_char_fsm_rejects_bad_and_unsupported_regexes() -> None:
    with pytest.raises(ValueError, match="invalid regex.*missing \\)"):
        CharFSM("(ab")
    with pytest.raises(ValueError, match="lookaround at position 1"):
        CharFSM("a(?!b)[(?=]")
    with pytest.raises(ValueError, match="not supported by the fsm grammar backend.*backreferences"):
        CharFSM(r"(a)\1")
    assert CharFSM(r"[(?=]\(?=").initial is not None  # escaped or in a class: not a lookaround
    with pytest.raises(ValueError, match="matches no string"):
        CharFSM("[^\\s\\S]")


def test_forced_chars_stop_at_choices_and_ends() -> None:
    fsm = CharFSM("ab(c|d)e?")
    state = fsm.initial
    assert fsm.forced_char(state) == "a"
    state = fsm.step(fsm.step(state, "a"), "b")
    assert fsm.forced_char(state) is None  # c or d
    state = fsm.step(state, "c")
    assert fsm.is_final(state) and fsm.forced_char(state) is None  # may end or add "e"


# ------------------------------------------------------------------ token level, real vocabulary


def _allowed(grammar, width: int) -> set:
    mask = torch.zeros(width, dtype=torch.bool)
    grammar.fill_allowed_mask(mask)
    return set(mask.nonzero().flatten().tolist())


def test_tokens_splitting_a_character_are_allowed(backends, vocab) -> None:
    """Byte-level BPE has tokens ending (or starting) inside a multi-byte character."""
    target = "日本語".encode("utf-8")
    grammar = backends["fsm"].compile("regex", "日本語")
    allowed = _allowed(grammar, vocab.vocab_size)
    partial = [t for t, b in enumerate(vocab.token_bytes) if b and target.startswith(b) and len(b) % 3]
    assert partial, "the tiny vocabulary should contain partial-character tokens"
    expected = {t for t, b in enumerate(vocab.token_bytes) if b and target.startswith(b)}
    assert allowed == expected
    # Spell the text with single-byte tokens only: every step passes through a partial character.
    singles = {b: t for t, b in enumerate(vocab.token_bytes) if b and len(b) == 1}
    assert grammar.accept_tokens([singles[bytes([byte])] for byte in target])
    assert grammar.is_terminated()


def test_ascii_class_excludes_every_non_ascii_byte(backends, vocab) -> None:
    grammar = backends["fsm"].compile("regex", "[a-z ]+")
    for tid in _allowed(grammar, vocab.vocab_size):
        spelled = vocab.token_bytes[tid]
        assert spelled is not None and all(b"a"[0] <= c <= b"z"[0] or c == 32 for c in spelled)


def test_fsm_is_cached_per_regex_and_indexed_lazily(backends) -> None:
    fsm_backend = backends["fsm"]
    regex = r"[0-9]{3}-[a-z]{2}"
    first = fsm_backend.compile("regex", regex)
    second = fsm_backend.compile("regex", regex)
    assert first.fsm is second.fsm  # compiled once per (regex, tokenizer)
    assert first.fsm.num_indexed_states == 1  # only the start state, built at compile time
    assert first.accept_token(first.fsm.index(first.fsm.start).allowed[0].item())
    first.fill_allowed_mask(torch.zeros(fsm_backend.vocab_size, dtype=torch.bool))
    assert first.fsm.num_indexed_states == 2


REGEX_SPECS = [s.spec for s in SPECS if s.kind == "regex"] + [r"[α-ω]+ ok", r"(\d+|[😀-😎])+", r"a\nb|c\td"]


@pytest.mark.parametrize("regex", REGEX_SPECS)
def test_masks_equal_xgrammar_in_lockstep(regex: str, compiled, vocab) -> None:
    """xgrammar as an independent oracle: both backends allow the same tokens at every step."""
    rng = random.Random(regex)
    width = vocab.vocab_size
    for _ in range(6):
        ours, theirs = compiled("fsm", "regex", regex), compiled("xgrammar", "regex", regex)
        for _ in range(40):
            assert ours.is_terminated() == theirs.is_terminated()
            if ours.is_terminated():
                break
            allowed = _allowed(ours, width)
            assert allowed == _allowed(theirs, width)
            token = rng.choice(sorted(allowed))
            assert ours.accept_token(token) and theirs.accept_token(token)


# ------------------------------------------------------------------ jump-forward


@pytest.mark.parametrize("backend", ["fsm", "xgrammar"])
def test_jump_forward_on_long_constant_parts(backend: str, compiled, tokenizer) -> None:
    grammar = compiled(backend, "regex", r"The answer is (yes|no)\. Thanks!")
    assert grammar.try_jump_forward() == "The answer is "
    assert grammar.accept_tokens(tokenizer.encode("The answer is ", add_special_tokens=False))
    assert grammar.try_jump_forward() is None  # "yes" or "no": a real choice
    assert grammar.accept_tokens(tokenizer.encode("y", add_special_tokens=False))
    assert grammar.try_jump_forward() == "es. Thanks!"
    assert grammar.accept_tokens(tokenizer.encode("es. Thanks!", add_special_tokens=False))
    assert grammar.try_jump_forward() is None and grammar.is_terminated()


def test_fsm_jump_forward_waits_for_a_split_character(backends, vocab) -> None:
    grammar = backends["fsm"].compile("regex", "(é|è)tat final")
    first_byte = next(t for t, b in enumerate(vocab.token_bytes) if b == "é".encode()[:1])
    assert grammar.accept_token(first_byte)
    assert grammar.try_jump_forward() is None  # mid-character: é or è is still open
    second_byte = next(t for t, b in enumerate(vocab.token_bytes) if b == "é".encode()[1:])
    assert grammar.accept_token(second_byte)
    assert grammar.try_jump_forward() == "tat final"
