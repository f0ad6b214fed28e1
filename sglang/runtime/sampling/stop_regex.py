"""`stop_regex`: checking the patterns, and searching the newest output with a time bound.

The search runs in the scheduler's loop after every token, so its cost must be bounded whatever
the pattern. A backtracking engine can take exponential time on a short text (`(\\w*)*!` on
thirty letters takes seconds with `re`; longer, forever), which would stall every request of the
server. Patterns are therefore run by the `regex` package, which avoids most catastrophic
backtracking and, for the rest, takes a timeout: a search that runs out of time raises
StopRegexTimeout, and the request is ended with an error instead of the scheduler hanging.

What a pattern may be is still Python's `re` (the syntax upstream clients use; `regex` reads it
the same way). `regex` compiles a repetition by copying its body `min` times, so `a{10**9}` would
take gigabytes: the repetition counts, multiplied out, are bounded first (MAX_STOP_REGEX_CHARS).
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

import regex

# Time one pattern's search of one request's tail may take. Ordinary patterns take microseconds
# on the 64-token window; the timeout is checked periodically, so a search may overrun it a bit.
STOP_REGEX_TIMEOUT_S = 0.1
# Characters a pattern's repetitions may multiply out to (`(ab){3}` is 6). The search window is
# 64 tokens, so a pattern needing more text than this could never match anyway.
MAX_STOP_REGEX_CHARS = 4096


class StopRegexTimeout(ValueError):
    """A stop_regex pattern took too long to search the output."""

    def __init__(self, pattern: str):
        super().__init__(
            f"stop_regex {pattern!r} took longer than {STOP_REGEX_TIMEOUT_S * 1000:g} ms to search the "
            f"output (catastrophic backtracking, e.g. nested repetitions like (a*)*); simplify the pattern")


def check_stop_regex(pattern: str) -> None:
    """ValueError naming the pattern if `re` cannot compile it or its repetitions multiply out
    beyond MAX_STOP_REGEX_CHARS."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"stop_regex {pattern!r} is not a valid regular expression: {exc}") from None
    # Imported here: the grammar package pulls in torch, which mere parameter checks do not need.
    from sglang.runtime.constrained.regex_measure import measure_regex

    try:
        measure = measure_regex(pattern)
    except RecursionError:  # the measure recurses per nesting level; re's parser allowed more
        raise ValueError(f"stop_regex {pattern[:100]!r}... nests its groups too deeply") from None
    if measure.forced > MAX_STOP_REGEX_CHARS:
        raise ValueError(
            f"stop_regex {pattern!r} repeats too much: its repetition counts (largest {measure.largest_count}) "
            f"multiply out to {measure.forced} characters, over the limit of {MAX_STOP_REGEX_CHARS} "
            f"(MAX_STOP_REGEX_CHARS); it is searched for in the last 64 output tokens")


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
