"""NGRAM drafting (prompt lookup): guess a request's next tokens from its own text.

Copy-heavy generations (rewriting a passage, editing code, quoting the prompt) repeat spans of
what is already in the context. If the last n tokens of prompt+output also occur earlier, the
tokens that followed that earlier occurrence are a cheap guess of what comes next. Longer
suffixes are tried first (a 5-token match predicts better than a 1-token one); among the
occurrences of one suffix the most recent wins (the text being copied is usually the nearest).
No model is involved: a miss costs nothing but the host search.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np


class NgramDrafter:
    def __init__(self, min_window: int, max_window: int, search_tokens: int = 4096):
        if not 1 <= min_window <= max_window:
            raise ValueError(f"need 1 <= min_window ({min_window}) <= max_window ({max_window})")
        self.min_window = min_window
        self.max_window = max_window
        # Only the newest `search_tokens` of a long context are searched: bounds the host time.
        self.search_tokens = search_tokens

    def propose(self, tokens: Sequence[int], max_draft: int) -> List[int]:
        """Up to `max_draft` tokens expected to follow `tokens`; [] when no suffix recurs."""
        if max_draft <= 0 or len(tokens) < self.min_window + 1:
            return []
        arr = np.asarray(tokens[-self.search_tokens:], dtype=np.int64)
        n_tok = arr.shape[0]
        for n in range(min(self.max_window, n_tok - 1), self.min_window - 1, -1):
            start = self._latest_match(arr, n)
            if start >= 0:
                follow = arr[start + n : start + n + max_draft]
                return follow.tolist()
        return []

    @staticmethod
    def _latest_match(arr: np.ndarray, n: int) -> int:
        """Start of the latest earlier occurrence of arr's last n tokens, or -1 (one vectorised
        comparison over all windows: O(len * n) without a Python loop)."""
        windows = np.lib.stride_tricks.sliding_window_view(arr[:-1], n)  # starts 0 .. len - n - 1
        hits = np.flatnonzero((windows == arr[-n:]).all(axis=1))
        return int(hits[-1]) if hits.size else -1
