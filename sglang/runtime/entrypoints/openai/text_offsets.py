"""`text_offset` of /v1/completions logprobs: where each reported token starts in the returned text.

A token's own text (its `tokens` entry) is not its share of the returned text:
- special tokens the text leaves out (the BOS a string prompt gets, EOS) show up in `tokens` as
  `<|begin_of_text|>` but add nothing to the text;
- a character split over several byte-level tokens shows as U+FFFD in each of them, yet is one
  character of the text.
So offsets come from decoding the ids the way the returned text was decoded. Ids are decoded in
groups that end where the text stops ending in U+FFFD (an incomplete character); within a group,
a token starts at the common prefix of the text decoded before it and the group's final text.
So a token that completes a character shares the offset of the character's start, a token after
a genuinely invalid byte starts after its U+FFFD, and BOS/EOS add nothing.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

REPLACEMENT_CHAR = "\ufffd"
CONTEXT_TOKENS = 4
# A group still ending in U+FFFD after this many tokens (invalid bytes, or tokens that each end
# mid-character, as byte-level BPE splits runs of CJK text) settles up to its unfinished tail,
# which stays open through the context: the cost per token stays bounded.
MAX_OPEN_TOKENS = 8


class TextOffsets:
    """Offsets of consecutive tokens of one piece of returned text (an echoed prompt, or an
    output) that starts at `start`. Without a tokenizer the tokens' own texts are summed.

    `_open` holds the ids of the group whose text may still change; once it settles, its text
    is added to `cursor` and its last ids become decoding context (a decoder may render a text's
    first token differently). Cost per token: two decodes of a few ids."""

    def __init__(self, tokenizer: Any, start: int = 0, skip_special_tokens: bool = True,
                 spaces_between_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.cursor = start  # offset where the text of `_open` begins
        self.skip_special_tokens = skip_special_tokens
        self.spaces_between_special_tokens = spaces_between_special_tokens
        self._context: List[int] = []
        self._context_len = 0  # len(decode(_context))
        self._open: List[int] = []
        self._open_text = ""  # decode(_context + _open) past the context's text

    def take(self, entries: Sequence[Sequence[Any]], limit: int) -> List[int]:
        """Offsets of these logprob entries ([logprob, token_id, text]), none past `limit` (the
        returned text's length so far: a stop string's tokens, or text still held back in a
        stream, must not point past it). Tokens of a group still open at the end get offsets
        from the text so far, ignoring its unfinished tail."""
        offsets: List[int] = []
        waiting: List[Tuple[int, str]] = []  # (slot in offsets, group text before the token)
        for entry in entries:
            if self.tokenizer is None:
                offsets.append(self.cursor)
                self.cursor += len(entry[2] or "")
                continue
            waiting.append((len(offsets), self._open_text))
            offsets.append(self.cursor)
            settled = self._add(int(entry[1]))
            if settled is not None:
                for slot, before in waiting:
                    offsets[slot] = self.cursor + _common_prefix_len(before, self._open_text)
                self._settle(settled)
                waiting = []
        for slot, before in waiting:
            offsets[slot] = self.cursor + _common_prefix_len(before.rstrip(REPLACEMENT_CHAR), self._open_text)
        return [min(offset, limit) for offset in offsets]

    def _add(self, token_id: int) -> Optional[str]:
        """Add a token to the open group; the text that settles with it, or None (still open)."""
        self._open.append(token_id)
        self._open_text = self._decode(self._context + self._open)[self._context_len:]
        if not self._open_text.endswith(REPLACEMENT_CHAR):
            return self._open_text
        if len(self._open) >= MAX_OPEN_TOKENS:
            # Tokens that keep splitting characters (each ends mid-character) or invalid bytes:
            # settle the text up to the unfinished tail, which stays open in the context.
            return self._open_text.rstrip(REPLACEMENT_CHAR)
        return None

    def _settle(self, text: str) -> None:
        self.cursor += len(text)
        self._context = (self._context + self._open)[-CONTEXT_TOKENS:]
        context_text = self._decode(self._context)
        # The context's text counts up to what has settled: an unfinished tail is still open.
        self._context_len = len(context_text) - (len(self._open_text) - len(text))
        self._open, self._open_text = [], ""

    def _decode(self, ids: List[int]) -> str:
        if not ids:
            return ""
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens,
                                     spaces_between_special_tokens=self.spaces_between_special_tokens)


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
