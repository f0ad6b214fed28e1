"""Vectorized token masks for the lark backend: most of a mask comes from numpy, not a trie walk.

A trie walk feeds every allowed byte of every allowed token to the LALR driver in Python, ~1 us
per trie node: 0.2 s for a JSON string-contents state on a 49k vocabulary. Most tokens in such a
state are runs of one "loop" of character cells: cells C such that, from the state S, any c in C
leads to T1 and any further c in C to a fixed T2 (`[^"\\]*`, `[0-9]+`, `[a-z]*`). Every token
made only of such characters is allowed in bulk (a numpy test on the vocabulary's cell matrix);
only the others whose first character is acceptable are stepped, a character column at a time
for all of them together (`step_cells_columns`).
Tokens that are not whole UTF-8 text, or longer than MAX_CHARS characters, are always stepped.
"""

from __future__ import annotations

import codecs
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from sglang.runtime.constrained.ebnf_to_lark import CharCells
from sglang.runtime.constrained.lalr_driver import LALRDriver, Stack, partial_char_range, utf8_length

MAX_CHARS = 32
MAX_LOOP_CELLS = 64  # finding a loop costs |cells|^2 parser steps


def _split_partial(spelled: bytes) -> Optional[Tuple[str, bytes]]:
    """(whole characters, the unfinished one's bytes) when the bytes begin some valid UTF-8 text;
    None when they do not: such a token is rejected from every state without pending bytes."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(spelled, final=False)
    except UnicodeDecodeError:
        return None
    return text, spelled[len(text.encode("utf-8")):]


class VocabChars:
    """Codepoints of every token (one per backend): [V, MAX_CHARS] int32, -1 padded."""

    def __init__(self, token_bytes: Sequence[Optional[bytes]]):
        n = len(token_bytes)
        self.codepoints = np.full((n, MAX_CHARS), -1, dtype=np.int32)
        self.stepped: List[int] = []  # ids stepped byte by byte (not whole text, or too long)
        self.text_ids = np.zeros(n, dtype=bool)  # ids handled by the vectorized path
        splits: List[Optional[Tuple[str, bytes]]] = []  # per stepped id: (whole chars, unfinished char)
        for tid, spelled in enumerate(token_bytes):
            if not spelled:
                continue
            try:
                text = spelled.decode("utf-8")
            except UnicodeDecodeError:
                split = _split_partial(spelled)
                if split is not None:  # else no boundary state accepts it: never stepped
                    self.stepped.append(tid)
                    splits.append(split if len(split[0]) <= MAX_CHARS else None)
                continue
            if len(text) > MAX_CHARS:
                self.stepped.append(tid)
                splits.append(None)
                continue
            self.codepoints[tid, : len(text)] = [ord(ch) for ch in text]
            self.text_ids[tid] = True
        # the stepped tokens' bytes, -1 padded, for stepping them a byte column at a time
        longest = max((len(token_bytes[t]) for t in self.stepped), default=0)
        self.stepped_bytes = np.full((len(self.stepped), longest), -1, dtype=np.int16)
        for row, tid in enumerate(self.stepped):
            self.stepped_bytes[row, : len(token_bytes[tid])] = np.frombuffer(token_bytes[tid], dtype=np.uint8)
        self.stepped_ids = np.asarray(self.stepped, dtype=np.int64)
        # For the bulk test of stepped tokens: their whole characters (-1 padded; a row of -2 when
        # not split: longer than MAX_CHARS) and the codepoint range of the unfinished character.
        self.stepped_prefix = np.full((len(self.stepped), MAX_CHARS), -1, dtype=np.int32)
        self.stepped_tail = np.zeros((len(self.stepped), 2), dtype=np.int64)
        for row, split in enumerate(splits):
            if split is None:
                self.stepped_prefix[row] = -2
                self.stepped_tail[row] = (1, 0)
                continue
            text, tail = split
            self.stepped_prefix[row, : len(text)] = [ord(ch) for ch in text]
            self.stepped_tail[row] = partial_char_range(tail, utf8_length(tail[0]))


class TokenCells:
    """The vocabulary as character cells of one grammar: [V, MAX_CHARS] with PAD and REJECT."""

    def __init__(self, chars: VocabChars, cells: CharCells):
        self.pad, self.reject = cells.num_cells, cells.num_cells + 1
        self.seq = self._cells_of(chars.codepoints, cells)
        self.seq[~chars.text_ids] = self.reject  # never matched by the vectorized path
        self.chars = chars
        self.first_byte_cells = _first_byte_cells(cells)
        self.bits = self.stepped_bits = self.tail_bits = None
        if self.reject < 64:
            self.bits = self._cell_bits(self.seq)
            # stepped tokens: cells of their whole characters, and cells their unfinished one may be in
            self.stepped_bits = self._cell_bits(self._cells_of(chars.stepped_prefix, cells))
            self.tail_bits = self._range_bits(chars.stepped_tail, cells)

    def _cells_of(self, cps: np.ndarray, cells: CharCells) -> np.ndarray:
        """Codepoints (-1 padding, -2 refused) as cells (PAD, REJECT)."""
        interval = np.searchsorted(np.asarray(cells.bounds), np.maximum(cps, 0), side="right") - 1
        cell = np.asarray(cells.cell_of_interval, dtype=np.int32)[interval]
        cell = np.where((cell < 0) | (cps == -2), self.reject, cell)
        return np.where(cps == -1, self.pad, cell).astype(np.int32)

    def _cell_bits(self, seq: np.ndarray) -> np.ndarray:
        """[rows] uint64: bit c set when the row holds a character of cell c (REJECT included), so
        "every character is in group G" is one AND over the vocabulary."""
        bits = np.zeros(len(seq), dtype=np.uint64)
        for j in range(seq.shape[1]):
            col = seq[:, j]
            live = col != self.pad
            bits[live] |= np.left_shift(np.uint64(1), col[live].astype(np.uint64))
        return bits

    @staticmethod
    def _range_bits(spans: np.ndarray, cells: CharCells) -> np.ndarray:
        """[rows] uint64: bit c set when cell c holds a codepoint of the row's [lo, hi] span."""
        memo: Dict[Tuple[int, int], int] = {}
        out = np.zeros(len(spans), dtype=np.uint64)
        for row, (lo, hi) in enumerate(spans.tolist()):
            if (lo, hi) not in memo:
                memo[lo, hi] = sum(1 << c for c, ranges in enumerate(cells.cell_ranges)
                                   if any(a <= hi and lo <= b for a, b in ranges))
            out[row] = memo[lo, hi]
        return out

    def lookup(self, members) -> np.ndarray:
        table = np.zeros(self.reject + 1, dtype=bool)
        table[list(members)] = True
        return table


def _lead_range(byte: int) -> Optional[Tuple[int, int]]:
    """Codepoints whose UTF-8 encoding starts with `byte` (None: no character does)."""
    need = utf8_length(byte)
    if need <= 1:
        return (byte, byte) if need else None
    lo, hi = partial_char_range(bytes((byte,)), need)
    return (lo, hi) if lo <= hi else None


def _first_byte_cells(cells: CharCells) -> np.ndarray:
    """[256, num_cells] bool: cell c holds a character whose encoding starts with byte b."""
    out = np.zeros((256, cells.num_cells), dtype=bool)
    for byte in range(256):
        span = _lead_range(byte)
        if span is None:
            continue
        for c, ranges in enumerate(cells.cell_ranges):
            out[byte, c] = any(lo <= span[1] and span[0] <= hi for lo, hi in ranges)
    return out


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
    ids = np.flatnonzero(tokens.lookup(nxt)[seq[:, 0]])  # the first character is acceptable
    allowed = np.zeros(len(seq), dtype=bool)
    group = _loop_group(driver, nxt)
    inside = sum(1 << c for c in group)
    outside = np.uint64(((1 << 64) - 1) ^ inside)
    if group:
        if tokens.bits is not None:
            bulk = (tokens.bits[ids] & outside) == 0
        else:
            bulk = tokens.lookup(group + (tokens.pad,))[seq[ids]].all(axis=1)
        allowed[ids[bulk]] = True
        ids = ids[~bulk]
    rows = seq[ids]
    memo: Dict = {}
    allowed[ids] = step_cells_columns(driver, stack, rows, tokens.pad)
    # Tokens that are not whole characters: only those whose first byte can begin an acceptable
    # character are stepped (a continuation byte never can; most lead bytes fail outside strings).
    chars = tokens.chars
    if chars.stepped_ids.size:
        byte_ok = tokens.first_byte_cells[:, sorted(nxt)].any(axis=1)
        cand = np.flatnonzero(byte_ok[chars.stepped_bytes[:, 0]])
        if group and tokens.stepped_bits is not None:
            # whole characters all in the loop, and the unfinished one may be a loop character
            bulk = (((tokens.stepped_bits[cand] & outside) == 0)
                    & ((tokens.tail_bits[cand] & np.uint64(inside)) != 0))
            allowed[chars.stepped_ids[cand[bulk]]] = True
            cand = cand[~bulk]
        allowed[chars.stepped_ids[cand]] = step_bytes_columns(driver, stack, chars.stepped_bytes[cand], memo)
    return torch.from_numpy(np.flatnonzero(allowed).astype(np.int32))


def _distinct(keys: np.ndarray, bound: int) -> Tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for keys in [0, bound) without sorting: O(n)."""
    seen = np.zeros(bound, dtype=bool)
    seen[keys] = True
    uniq = np.flatnonzero(seen)
    slot = np.empty(bound, dtype=np.int64)
    slot[uniq] = np.arange(uniq.size)
    return uniq, slot[keys]


def _step_columns(start, rows: np.ndarray, skip: int, base: int, step) -> np.ndarray:
    """Which rows of symbols (ending in `skip` padding) are accepted from parser state `start`,
    stepping every row a column at a time: rows at the same state reading the same symbol share
    one `step(state, symbol)` call (None: rejected), so the Python work is the number of distinct
    (state, symbol) pairs per column, not the number of symbols. Symbols are < base."""
    m = rows.shape[0]
    alive = np.ones(m, dtype=bool)
    states: List = [start]
    index: Dict = {start: 0}
    cur = np.zeros(m, dtype=np.int64)  # each row's state, as an index into `states`
    for j in range(rows.shape[1]):
        col = rows[:, j].astype(np.int64)
        act = np.flatnonzero(alive & (col != skip))  # a row's padding all comes after its symbols
        if act.size == 0:
            break
        keys, inverse = _distinct(cur[act] * base + col[act], len(states) * base)
        nxt_ids = np.empty(keys.size, dtype=np.int64)
        for u, key in enumerate(keys.tolist()):
            sid, symbol = divmod(key, base)
            nxt = step(states[sid], symbol)
            if nxt is None:
                nxt_ids[u] = -1
                continue
            if nxt not in index:
                index[nxt] = len(states)
                states.append(nxt)
            nxt_ids[u] = index[nxt]
        moved = nxt_ids[inverse]
        cur[act] = moved
        alive[act[moved < 0]] = False
    return alive


def step_cells_columns(driver: LALRDriver, stack: Stack, rows: np.ndarray, pad: int) -> np.ndarray:
    """Which token rows (cells, PAD-padded; REJECT = pad + 1) the parser accepts from `stack`
    (stepping each token alone made a cold 128k-token mask cost up to 0.5 s;
    benchmarks/results/cpu_lark_mask_128k_2026-12-07.json)."""
    return _step_columns(stack, rows, pad, pad + 2,
                         lambda st, cell: driver.feed(st, driver.terminals[cell]) if cell < pad else None)


def step_bytes_columns(driver: LALRDriver, stack: Stack, rows: np.ndarray, memo: Dict) -> np.ndarray:
    """Which byte rows (-1 padded) the parser accepts from `stack`; a row may end inside a UTF-8
    character whose completion is still possible."""
    return _step_columns((stack, b""), rows, -1, 256, lambda state, byte: driver.feed_byte(state, byte, memo))
