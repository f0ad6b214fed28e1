"""How big a regex gets once its repetitions are multiplied out, measured on Python's parse tree.

- `positions`: character positions of the fully expanded regex (a repetition counts its maximum,
  or its minimum + 1 when unbounded): about the number of automaton states interegular builds.
- `forced`: an upper bound on any text the regex can force from any point (branches take their
  largest, repetitions their minimum count, at least 1): what jump-forward may have to build.
- `largest_count`: the largest count written in any repetition, for error messages.

Computed before compiling, in time linear in the regex's length (counts multiply, never expand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

try:  # Python >= 3.11
    from re import _constants as _c, _parser as _sre_parse
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT} | ({_c.POSSESSIVE_REPEAT} if hasattr(_c, "POSSESSIVE_REPEAT") else set())
_ONE_CHAR = {_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN}
_WRAPPERS = {_c.ASSERT, _c.ASSERT_NOT} | ({_c.ATOMIC_GROUP} if hasattr(_c, "ATOMIC_GROUP") else set())


@dataclass(frozen=True)
class RegexMeasure:
    positions: int
    forced: int
    largest_count: int


def measure_regex(regex: str) -> RegexMeasure:
    """Measure `regex`; raises ValueError if Python's parser rejects it."""
    try:
        parsed = _sre_parse.parse(regex)
    except Exception as exc:  # re.error, or RecursionError on absurd nesting
        raise ValueError(f"invalid regex {regex!r}: {exc}") from None
    positions, forced, largest = _measure(parsed)
    return RegexMeasure(positions, forced, largest)


def _measure(items: Any) -> Tuple[int, int, int]:
    """(positions, forced, largest count) of a sequence of parse-tree items."""
    positions = forced = largest = 0
    for op, arg in items:
        p, f, n = _measure_item(op, arg)
        positions += p
        forced += f
        largest = max(largest, n)
    return positions, forced, largest


def _measure_item(op: Any, arg: Any) -> Tuple[int, int, int]:
    if op in _ONE_CHAR:
        return 1, 1, 0
    if op in _REPEATS:
        low, high, sub = arg
        p, f, n = _measure(sub)
        copies = low + 1 if high == _c.MAXREPEAT else high
        shown = low if high == _c.MAXREPEAT else high
        return copies * p, max(low, 1) * f, max(n, shown)
    if op == _c.SUBPATTERN:
        return _measure(arg[-1])
    if op == _c.BRANCH:
        parts = [_measure(alt) for alt in arg[1]]
        return sum(p for p, _, _ in parts), max(f for _, f, _ in parts), max(n for _, _, n in parts)
    if op in _WRAPPERS:
        return _measure(arg[-1])
    if op == _c.GROUPREF_EXISTS:
        parts = [_measure(alt) for alt in arg[1:] if alt is not None]
        return sum(p for p, _, _ in parts), max(f for _, f, _ in parts), max(n for _, _, n in parts)
    return 0, 0, 0  # anchors, backreferences (refused later by the fsm backend)
