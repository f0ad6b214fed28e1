"""A regex as a character-level DFA (built by interegular), trimmed to live states.

"Live" means a final state is still reachable; every transition into a non-live state is treated
as a rejection, so a caller never walks into a dead end it cannot finish. A regex with no live
start state matches nothing and is refused.

interegular expands every repetition into states, so a regex is measured first and refused when
its expansion exceeds MAX_FSM_REGEX_POSITIONS (`a{99999999}` would take hours and gigabytes).
"""

from __future__ import annotations

import bisect
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Set

import interegular
from interegular.fsm import anything_else

from sglang.runtime.constrained.grammar_limits import MAX_FSM_REGEX_POSITIONS, fsm_size_error
from sglang.runtime.constrained.regex_measure import measure_regex


_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")


def _validate(regex: str) -> None:
    """Python's parser first: its messages ("missing ), unterminated subpattern at position 0")
    name the problem precisely, and the random-walk tests validate outputs with `re`."""
    try:
        re.compile(regex)
    except re.error as exc:
        raise ValueError(f"invalid regex {regex!r}: {exc}") from None
    position = _lookaround_position(regex)
    if position >= 0:
        # interegular accepts lookaheads but gives them a meaning that differs from re.fullmatch.
        raise ValueError(
            f"regex {regex!r} uses a lookaround at position {position}, which the fsm grammar backend "
            f"does not support; rewrite the regex without it or use --grammar-backend xgrammar"
        )
    measure = measure_regex(regex)
    if measure.positions > MAX_FSM_REGEX_POSITIONS:
        raise fsm_size_error(measure.positions, measure.largest_count)


def _lookaround_position(regex: str) -> int:
    """Index of the first lookaround group outside escapes and character classes, or -1."""
    i, in_class = 0, False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            i += 2 if regex.startswith("^", i + 1) else 1
            i += 1 if regex.startswith("]", i) else 0  # a leading ']' is a literal member
            continue
        elif regex.startswith(_LOOKAROUNDS, i):
            return i
        i += 1
    return -1


class CharFSM:
    """Deterministic automaton over characters; states are ints, -1 is the dead state."""

    def __init__(self, regex: str):
        _validate(regex)
        try:
            fsm = interegular.parse_pattern(regex).to_fsm()
        except Exception as exc:  # interegular raises several unrelated types for unsupported syntax
            raise ValueError(
                f"regex {regex!r} is not supported by the fsm grammar backend "
                f"({type(exc).__name__}: {exc}); lookarounds and backreferences cannot be compiled "
                f"to an automaton; rewrite the regex or use --grammar-backend xgrammar"
            ) from None
        symbols = dict(fsm.alphabet._symbol_mapping)
        self._else_key: Optional[int] = symbols.pop(anything_else, None)
        self._key_of: Dict[str, int] = symbols
        self._chars_of: Dict[int, List[str]] = {}
        for ch, key in symbols.items():
            self._chars_of.setdefault(key, []).append(ch)
        self._explicit_cps = sorted(ord(ch) for ch in symbols)  # for counting "anything else"
        self.initial: int = fsm.initial
        self.finals: FrozenSet[int] = frozenset(fsm.finals)
        live = _live_states(fsm.map, self.finals)
        self._map: Dict[int, Dict[int, int]] = {
            s: {k: t for k, t in fsm.map.get(s, {}).items() if t in live} for s in live
        }
        if self.initial not in live:
            raise ValueError(f"regex {regex!r} matches no string at all; nothing could be generated")

    # ---------------------------------------------------------------- stepping
    def step(self, state: int, ch: str) -> int:
        key = self._key_of.get(ch, self._else_key)
        if key is None:
            return -1
        return self._map[state].get(key, -1)

    def is_final(self, state: int) -> bool:
        return state in self.finals

    def has_exits(self, state: int) -> bool:
        return bool(self._map[state])

    def forced_char(self, state: int) -> Optional[str]:
        """The only character the automaton accepts here, if exactly one (and it may not end)."""
        if state in self.finals:
            return None  # ending is a second option
        edges = self._map[state]
        if len(edges) != 1:
            return None
        key = next(iter(edges))
        chars = self._chars_of.get(key, [])
        return chars[0] if len(chars) == 1 and key != self._else_key else None

    def accepts_some_in(self, state: int, lo: int, hi: int) -> bool:
        """Whether some character with code point in [lo, hi] leads to a live state.

        Used for partial UTF-8 sequences: the characters a byte prefix can still become form
        such a contiguous code-point range."""
        for key in self._map[state]:
            if any(lo <= ord(ch) <= hi for ch in self._chars_of.get(key, ())):
                return True
            if key == self._else_key and self._count_explicit(lo, hi) < hi - lo + 1:
                return True  # some code point in the range is not listed explicitly
        return False

    def _count_explicit(self, lo: int, hi: int) -> int:
        cps = self._explicit_cps
        return bisect.bisect_right(cps, hi) - bisect.bisect_left(cps, lo)

    def states(self) -> Iterable[int]:
        """Every live state."""
        return self._map.keys()

    @property
    def num_states(self) -> int:
        return len(self._map)


def _live_states(transitions: Dict[int, Dict[int, int]], finals: FrozenSet[int]) -> Set[int]:
    reverse: Dict[int, Set[int]] = {}
    for src, edges in transitions.items():
        for dst in edges.values():
            reverse.setdefault(dst, set()).add(src)
    live = set(finals)
    frontier = list(finals)
    while frontier:
        for src in reverse.get(frontier.pop(), ()):
            if src not in live:
                live.add(src)
                frontier.append(src)
    return live
