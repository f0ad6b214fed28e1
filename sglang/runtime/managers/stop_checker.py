"""Stop-string matching on a growing output text.

Two questions are asked after each new piece of text:
- `find`: did a stop string appear? Only occurrences that reach into the new text are searched
  for (older ones were found by earlier calls), so a call costs O(new text + longest stop string)
  and a stop string split across tokens is still found.
- `safe_prefix_len`: how much of the text may be streamed now? A suffix that is the beginning of
  a stop string is held back, because the next token may complete it and the client must never
  see stop text.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple


class StopStringMatcher:
    def __init__(self, stop_strs: Optional[Iterable[str]]) -> None:
        # Empty strings would match everywhere; they carry no meaning as stop strings.
        self.stop_strs: List[str] = list(dict.fromkeys(s for s in (stop_strs or ()) if s))
        self.max_len = max((len(s) for s in self.stop_strs), default=0)
        self._first_chars = frozenset(s[0] for s in self.stop_strs)

    def __bool__(self) -> bool:
        return bool(self.stop_strs)

    def find(self, text: str, new_from: int = 0) -> Optional[Tuple[int, str]]:
        """Earliest occurrence of a stop string that ends at or after `text[new_from]`.

        Returns (start index, matched stop string) or None. On equal starts the stop string
        listed first wins.
        """
        best: Optional[Tuple[int, str]] = None
        for stop in self.stop_strs:
            start = text.find(stop, max(0, new_from - len(stop) + 1))
            if start >= 0 and (best is None or start < best[0]):
                best = (start, stop)
        return best

    def safe_prefix_len(self, text: str) -> int:
        """Length of the prefix of `text` that no stop string can start in.

        The longest suffix of `text` that is a proper prefix of some stop string is held back.
        Full occurrences are `find`'s business: callers cut at them.
        """
        tail_start = max(0, len(text) - (self.max_len - 1))
        for start in range(tail_start, len(text)):
            if text[start] in self._first_chars and self._is_stop_prefix(text, start):
                return start
        return len(text)

    def _is_stop_prefix(self, text: str, start: int) -> bool:
        size = len(text) - start
        return any(size < len(s) and text.startswith(s[:size], start) for s in self.stop_strs)
