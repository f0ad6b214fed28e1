"""Character-level LALR(1) stepping on a parse table built by lark, and the token index over it.

lark analyses the grammar (from ebnf_to_lark's character-cell form) and builds the LALR table;
we run the table ourselves on immutable state stacks (tuples), so a state can be shared by a
rollback history and by every branch of a vocabulary-trie walk without copying a parser object.
A character is fed only if it is eventually shifted (reductions on a rejected lookahead are
discarded with the tuple), so every fed prefix is viable: some continuation completes it.

Tokens are bytes; a token may end inside a multi-byte character. The pending bytes are part of
the state, and they are allowed only if some acceptable character starts with them.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from lark import Lark
from lark.exceptions import GrammarError
from lark.parsers.lalr_analysis import Shift

from sglang.runtime.constrained.ebnf_to_lark import CharCells, terminal

Stack = Tuple[int, ...]
State = Tuple[Stack, bytes]  # (LALR state stack, bytes of an unfinished UTF-8 character)
_END = "$END"


def build_table(lark_text: str, cells: CharCells):
    """lark's LALR table for the character-cell grammar; ValueError naming any conflict."""
    try:
        # strict: a shift/reduce conflict is an error, not silently resolved as a shift (which
        # would make masks refuse valid text, e.g. " or" after an atom that " and" could follow)
        parser = Lark(lark_text, parser="lalr", lexer="basic", strict=True)
    except GrammarError as exc:
        raise ValueError("grammar is not LALR(1) at the character level, so the lark backend cannot "
                         f"serve it (use --grammar-backend xgrammar, or remove the ambiguity): "
                         f"{_describe_cells(str(exc), cells)}") from None
    return parser.parser.parser.parser.parse_table


def _describe_cells(message: str, cells: CharCells) -> str:
    for c in range(cells.num_cells - 1, -1, -1):
        chars = ", ".join(repr(chr(lo)) if lo == hi else f"{chr(lo)!r}-{chr(hi)!r}"
                          for lo, hi in cells.cell_ranges[c][:4])
        message = message.replace(f"Terminal('{terminal(c)}')", f"character [{chars}]").replace(
            f" {terminal(c)}>", f" <char {chars}>>").replace(f" {terminal(c)} ", f" <char {chars}> ")
        message = message.replace(f"terminal {terminal(c)}.", f"character [{chars}].")
    return message


class LALRDriver:
    """Shared by every request of one grammar; the methods are pure functions of their arguments."""

    def __init__(self, table, cells: CharCells):
        self.states = table.states
        self.start: Stack = (table.start_states["start"],)
        self.end_state: int = table.end_states["start"]
        self.cells = cells
        self.terminals = [terminal(c) for c in range(cells.num_cells)]

    def feed(self, stack: Stack, term: str) -> Optional[Stack]:
        """The stack after shifting `term`, or None if the grammar rejects it here."""
        return self.feed_reading(stack, term, len(stack))[0]

    def feed_reading(self, stack: Stack, term: str, low: int) -> Tuple[Optional[Stack], int]:
        """feed, and the smaller of `low` and the shortest stack length whose top it read."""
        states = self.states
        while True:
            action = states[stack[-1]].get(term)
            if action is None:
                return None, low
            kind, arg = action
            if kind is Shift:
                return stack + (arg,), low
            size = len(arg.expansion)
            stack = stack[:-size] if size else stack
            low = min(low, len(stack))  # the goto below reads the new top
            stack = stack + (states[stack[-1]][arg.origin.name][1],)

    def accepts_end(self, stack: Stack) -> bool:
        states = self.states
        while stack[-1] != self.end_state:
            action = states[stack[-1]].get(_END)
            if action is None or action[0] is Shift:
                return action is not None and action[1] == self.end_state
            size = len(action[1].expansion)
            stack = stack[:-size] if size else stack
            stack = stack + (states[stack[-1]][action[1].origin.name][1],)
        return True

    def feed_char(self, stack: Stack, codepoint: int) -> Optional[Stack]:
        cell = self.cells.cell(codepoint)
        return None if cell < 0 else self.feed(stack, self.terminals[cell])

    def acceptable_cells(self, stack: Stack) -> Tuple[int, ...]:
        return tuple(c for c, t in enumerate(self.terminals) if t in self.states[stack[-1]]
                     and self.feed(stack, t) is not None)

    def feed_byte(self, state: State, byte: int, cache: Dict) -> Optional[State]:
        """State after one more byte (cache: a per-walk memo, of steps and of acceptable cells)."""
        stack, pending = state
        pending += bytes((byte,))
        need = utf8_length(pending[0])
        if need == 0 or (len(pending) > 1 and byte & 0xC0 != 0x80):
            return None
        if len(pending) < need:
            return (stack, pending) if self._prefix_possible(stack, pending, need, cache) else None
        try:
            codepoint = ord(pending.decode("utf-8"))
        except UnicodeDecodeError:
            return None
        key = (stack, codepoint)  # many trie nodes share a stack (e.g. inside a string)
        if key in cache:
            return cache[key]
        nxt = self.feed_char(stack, codepoint)
        cache[key] = result = None if nxt is None else (nxt, b"")
        return result

    def _prefix_possible(self, stack: Stack, pending: bytes, need: int, cache: Dict) -> bool:
        lo, hi = partial_char_range(pending, need)
        if hi < lo:
            return False
        cells = cache.get(stack)
        if cells is None:
            cells = cache[stack] = self.acceptable_cells(stack)
        return any(a <= hi and lo <= b for c in cells for a, b in self.cells.cell_ranges[c])

    def forced_text(self, stack: Stack, max_chars: int) -> str:
        """Characters every continuation must start with (stops where the text may end)."""
        out = []
        while len(out) < max_chars and not self.accepts_end(stack):
            cells = self.acceptable_cells(stack)
            if len(cells) != 1:
                break
            ranges = self.cells.cell_ranges[cells[0]]
            if len(ranges) != 1 or ranges[0][0] != ranges[0][1]:
                break
            out.append(chr(ranges[0][0]))
            stack = self.feed(stack, self.terminals[cells[0]])
        return "".join(out)


class DepthTracker(LALRDriver):
    """A driver view for one computation from a stack of `depth` entries: `low` ends as the
    smallest stack length any step consulted, so the result depends only on stack[low - 1:]
    (entries below were never read). Masks are cached under that suffix: the same local parse
    context at another nesting depth reuses them. One per computation (not shared by threads)."""

    def __init__(self, driver: LALRDriver, depth: int):
        self.__dict__.update(driver.__dict__)  # the shared table, cells and terminals
        self.low = depth

    def feed(self, stack: Stack, term: str) -> Optional[Stack]:
        nxt, self.low = self.feed_reading(stack, term, self.low)
        return nxt


_MIN_CODEPOINT = {2: 0x80, 3: 0x800, 4: 0x10000}


def partial_char_range(pending: bytes, need: int) -> Tuple[int, int]:
    """Codepoints the unfinished character `pending` (its lead byte says `need` bytes in all) can
    still become; lo > hi when none (overlong, or surrogates only)."""
    rest = need - len(pending)
    value = pending[0] & (0xFF >> (need + 1))
    for b in pending[1:]:
        value = (value << 6) | (b & 0x3F)
    lo, hi = value << (6 * rest), min(((value + 1) << (6 * rest)) - 1, 0x10FFFF)
    lo = max(lo, _MIN_CODEPOINT[need])  # shorter encodings of smaller codepoints are invalid
    if lo >= 0xD800 and hi <= 0xDFFF:
        return 1, 0
    return lo, hi


def utf8_length(first: int) -> int:
    """Bytes of the character a lead byte begins (0: not a lead byte)."""
    if first < 0x80:
        return 1
    if 0xC2 <= first < 0xE0:
        return 2
    if 0xE0 <= first < 0xF0:
        return 3
    if 0xF0 <= first < 0xF5:
        return 4
    return 0
