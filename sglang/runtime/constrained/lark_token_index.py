"""Vectorized token masks for the lark backend: most of a mask comes from numpy, not a trie walk.

A trie walk feeds every allowed byte of every allowed token to the LALR driver in Python, ~1 us
per trie node: 0.2 s for a JSON string-contents state on a 49k vocabulary. Most tokens in such a
state are runs of one "loop" of character cells: cells C such that, from the state S, any c in C
leads to T1 and any further c in C to a fixed T2 (`[^"\\]*`, `[0-9]+`, `[a-z]*`). Every token
made only of such characters is allowed in bulk (a numpy test on the vocabulary's cell matrix);
only the others whose first character is acceptable (a few percent) are stepped one by one.
Tokens that are not whole UTF-8 text, or longer than MAX_CHARS characters, are always stepped.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from sglang.runtime.constrained.ebnf_to_lark import CharCells
from sglang.runtime.constrained.lalr_driver import LALRDriver, Stack

MAX_CHARS = 32
MAX_LOOP_CELLS = 64  # finding a loop costs |cells|^2 parser steps


class VocabChars:
    """Codepoints of every token (one per backend): [V, MAX_CHARS] int32, -1 padded."""

    def __init__(self, token_bytes: Sequence[Optional[bytes]]):
        n = len(token_bytes)
        self.codepoints = np.full((n, MAX_CHARS), -1, dtype=np.int32)
        self.stepped: List[int] = []  # ids always stepped byte by byte
        self.text_ids = np.zeros(n, dtype=bool)  # ids handled by the vectorized path
        for tid, spelled in enumerate(token_bytes):
            if not spelled:
                continue
            try:
                text = spelled.decode("utf-8")
            except UnicodeDecodeError:
                self.stepped.append(tid)
                continue
            if len(text) > MAX_CHARS:
                self.stepped.append(tid)
                continue
            self.codepoints[tid, : len(text)] = [ord(ch) for ch in text]
            self.text_ids[tid] = True


class TokenCells:
    """The vocabulary as character cells of one grammar: [V, MAX_CHARS] with PAD and REJECT."""

    def __init__(self, chars: VocabChars, cells: CharCells):
        self.pad, self.reject = cells.num_cells, cells.num_cells + 1
        cps = chars.codepoints
        interval = np.searchsorted(np.asarray(cells.bounds), np.maximum(cps, 0), side="right") - 1
        cell = np.asarray(cells.cell_of_interval, dtype=np.int32)[interval]
        cell = np.where(cell < 0, self.reject, cell)
        self.seq = np.where(cps < 0, self.pad, cell).astype(np.int32)
        self.seq[~chars.text_ids] = self.reject  # never matched by the vectorized path
        self.chars = chars

    def lookup(self, members) -> np.ndarray:
        table = np.zeros(self.reject + 1, dtype=bool)
        table[list(members)] = True
        return table


def _loop_group(driver: LALRDriver, nxt: Dict[int, Stack]) -> Tuple[int, ...]:
    """A set G of acceptable cells such that every string over G is accepted (see module doc).

    Shifting differs per cell, so stacks are compared after the next character: for each c' in
    G, feeding c' after any c in G (first character or later) must give one stack V[c']. Cells
    disagreeing with the majority are dropped until the set is stable; () if none is found."""
    group = set(nxt)
    if len(group) > MAX_LOOP_CELLS:
        return ()
    memo: Dict[Tuple[Stack, int], Optional[Stack]] = {}

    def feed(stack: Stack, cell: int) -> Optional[Stack]:
        key = (stack, cell)
        if key not in memo:
            memo[key] = driver.feed(stack, driver.terminals[cell])
        return memo[key]

    while group:
        order = sorted(group)
        # cells whose follow-ups agree with the majority's (e.g. all but the closing quote)
        sigs = {c: tuple(feed(nxt[c], c2) for c2 in order) for c in order}
        majority = Counter(sigs.values()).most_common(1)[0][0]
        v = dict(zip(order, majority))  # V[c2]: the stack after a first character, then c2
        keep = {c for c in order if sigs[c] == majority and v[c] is not None}
        if keep == group:
            # later characters: feeding c2 once V[c] was reached gives V[c2] again
            ok = all(feed(v[c], c2) == v[c2] for c in group for c2 in group)
            return tuple(order) if ok else ()
        group = keep
    return ()


def allowed_ids(driver: LALRDriver, tokens: TokenCells, token_bytes: Sequence[Optional[bytes]],
                stack: Stack) -> torch.Tensor:
    """int32 ids of the tokens allowed from `stack` (no pending bytes)."""
    nxt = {c: driver.feed(stack, driver.terminals[c]) for c in driver.acceptable_cells(stack)}
    seq = tokens.seq
    candidates = tokens.lookup(nxt)[seq[:, 0]]
    allowed = np.zeros(len(seq), dtype=bool)
    group = _loop_group(driver, nxt)
    if group:
        in_group = tokens.lookup(group + (tokens.pad,))
        bulk = candidates & in_group[seq].all(axis=1)
        allowed |= bulk
        candidates &= ~bulk
    memo: Dict = {}
    for tid in np.flatnonzero(candidates).tolist():
        allowed[tid] = _step_cells(driver, stack, seq[tid], tokens.pad, memo)
    for tid in tokens.chars.stepped:
        allowed[tid] = _step_bytes(driver, stack, token_bytes[tid], memo)
    return torch.from_numpy(np.flatnonzero(allowed).astype(np.int32))


def _step_cells(driver: LALRDriver, stack: Stack, row: np.ndarray, pad: int, memo: Dict) -> bool:
    for cell in row.tolist():
        if cell == pad:
            break
        key = (stack, -1 - cell)  # negative: never collides with codepoint keys of feed_byte
        nxt = memo[key] if key in memo else memo.setdefault(key, driver.feed(stack, driver.terminals[cell])
                                                              if cell < pad else None)
        if nxt is None:
            return False
        stack = nxt
    return True


def _step_bytes(driver: LALRDriver, stack: Stack, spelled: bytes, memo: Dict) -> bool:
    state = (stack, b"")
    for byte in spelled:
        state = driver.feed_byte(state, byte, memo)
        if state is None:
            return False
    return True
