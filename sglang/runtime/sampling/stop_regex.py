"""`stop_regex`: compiling the patterns, and searching the newest output with a time bound.

The search runs in the scheduler's loop after every token, so its cost must be bounded whatever
the pattern. A backtracking engine can take exponential time on a short text (`(\\w*)*!` on
thirty letters takes seconds with `re`; longer, forever), which would stall every request of the
server. Patterns are therefore run by the `regex` package (Python's `re` syntax, with `re`'s
semantics for these patterns), which avoids most catastrophic backtracking and, for the rest,
takes a timeout: a search that runs out of time raises StopRegexTimeout, and the request is ended
with an error instead of the scheduler hanging.
"""

from __future__ import annotations

from typing import Iterable, Optional

import regex

# Time one pattern's search of one request's tail may take. Ordinary patterns take microseconds
# on the 64-token window; the timeout is checked periodically, so a search may overrun it a bit.
STOP_REGEX_TIMEOUT_S = 0.1


class StopRegexTimeout(ValueError):
    """A stop_regex pattern took too long to search the output."""

    def __init__(self, pattern: str):
        super().__init__(
            f"stop_regex {pattern!r} took longer than {STOP_REGEX_TIMEOUT_S * 1000:g} ms to search the "
            f"output (catastrophic backtracking, e.g. nested repetitions like (a*)*); simplify the pattern")


def check_stop_regex(pattern: str) -> None:
    """ValueError naming the pattern if it does not compile (syntax, repeat counts too large)."""
    try:
        regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError, MemoryError) as exc:
        raise ValueError(f"stop_regex {pattern!r} is not a valid regular expression: {exc}") from None


def find_new_match(patterns: Iterable[str], tail: str, newest_chars: int) -> Optional[str]:
    """The first non-empty match of a pattern in `tail` that ends in its last `newest_chars`
    characters (the text the newest token completed); None if there is none."""
    for pattern in patterns:
        try:
            for match in regex.finditer(pattern, tail, timeout=STOP_REGEX_TIMEOUT_S):
                if match.end() > len(tail) - newest_chars and match.group():
                    return match.group()
        except TimeoutError:
            raise StopRegexTimeout(pattern) from None
    return None
