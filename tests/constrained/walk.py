"""Random walks through a grammar over the real tiny tokenizer, checking mask invariants each step.

A walk samples uniformly among the allowed tokens (temperature 1 over a flat model) for
`explore_steps`, picking an allowed EOS with probability `eos_prob`. After that it steers towards
an end: EOS when allowed, else closing punctuation, else the shortest tokens (random ties), so
unbounded strings and lists still finish within `max_steps`. Every sampled token comes from the
grammar's own mask, so validity of the text is entirely the grammar's doing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import torch

from sglang.runtime.constrained.base_grammar import BaseGrammarObject

_CLOSERS = {b'"', b"}", b"]", b")", b"."}
_OPENERS = {b"(", b"[", b"{", b"+", b"*"}


@dataclass
class Vocab:
    """What a walk needs to know about the tokenizer."""

    tokenizer: Any
    vocab_size: int  # model vocabulary (mask width), >= len(tokenizer)
    token_bytes: Sequence[Optional[bytes]]  # None for special tokens
    eos_ids: frozenset

    def decode(self, ids: List[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i not in self.eos_ids], skip_special_tokens=False)


@dataclass
class WalkResult:
    ids: List[int]
    text: str
    terminated: bool


def _finish_rank(spelled: Optional[bytes]) -> int:
    """Lower is preferred when steering towards an end: close, then separate, then short tokens."""
    if spelled is None:
        return 9
    if spelled in _CLOSERS:
        return 0
    if spelled == b",":
        return 1  # only taken when nothing closes here (a required field follows)
    if spelled in _OPENERS:
        return 4
    return 2 if len(spelled) == 1 else 3


def _pick(allowed: List[int], vocab: Vocab, rng: random.Random, finishing: bool, eos_prob: float) -> int:
    eos = [t for t in allowed if t in vocab.eos_ids]
    if eos and (finishing or rng.random() < eos_prob):
        return rng.choice(eos)
    candidates = [t for t in allowed if t not in vocab.eos_ids] or eos
    if not finishing:
        return rng.choice(candidates)
    ranks = [_finish_rank(vocab.token_bytes[t]) for t in candidates]
    best = min(ranks)
    return rng.choice([t for t, r in zip(candidates, ranks) if r == best])


def check_mask(allowed: List[int], vocab: Vocab) -> None:
    """Invariants of every mask: no padding ids, no special tokens other than EOS, not empty."""
    assert allowed, "the grammar allows no token at all (dead end)"
    for tid in allowed:
        assert tid < len(vocab.tokenizer), f"padding id {tid} allowed"
        assert vocab.token_bytes[tid] is not None or tid in vocab.eos_ids, f"special token {tid} allowed"


def random_walk(
    grammar: BaseGrammarObject,
    vocab: Vocab,
    rng: random.Random,
    max_steps: int = 200,
    explore_steps: int = 40,
    eos_prob: float = 0.25,
) -> WalkResult:
    mask = torch.zeros(vocab.vocab_size, dtype=torch.bool)
    ids: List[int] = []
    for step in range(max_steps):
        if grammar.is_terminated():
            return WalkResult(ids, vocab.decode(ids), True)
        grammar.fill_allowed_mask(mask)
        allowed = mask.nonzero().flatten().tolist()
        check_mask(allowed, vocab)
        tid = _pick(allowed, vocab, rng, finishing=step >= explore_steps, eos_prob=eos_prob)
        assert grammar.accept_token(tid), f"grammar rejected token {tid} that its own mask allowed"
        ids.append(tid)
    return WalkResult(ids, vocab.decode(ids), grammar.is_terminated())
