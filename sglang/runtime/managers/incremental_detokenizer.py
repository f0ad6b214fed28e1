"""Incremental detokenization: turn a growing list of token ids into text, emitting only text
that can no longer change.

Technique (prefix offset / read offset): keep two token offsets into the id list.
`ids[prefix:read]` is a small window of already-emitted tokens that gives the next tokens their
decoding context (a leading space, a partial UTF-8 sequence); `ids[read:]` is not emitted yet.
Each step decodes `ids[prefix:]` and `ids[prefix:read]` and emits the difference except for
trailing U+FFFD characters: that is what an incomplete multi-byte character decodes to, and the
next token may complete it. The window slides only when nothing is held back. Cost per step is
O(window), independent of the output length.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

REPLACEMENT_CHAR = "\ufffd"

# Prompt tokens used as decoding context for the first output tokens. A few are enough for
# decoders that treat the first token of a text specially (e.g. dropping a leading space).
PROMPT_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """Streams the text of one request's output ids.

    `add()` returns new stable text; `flush()` (once, at the end) returns the rest, including a
    genuinely invalid trailing byte sequence as U+FFFD. Everything returned, concatenated, equals
    `tokenizer.decode(all_output_ids, ...)` for byte-level BPE tokenizers.
    """

    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: Optional[Sequence[int]] = None,
        skip_special_tokens: bool = True,
        spaces_between_special_tokens: bool = True,
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.spaces_between_special_tokens = spaces_between_special_tokens
        self._ids: List[int] = []
        self._prefix = 0
        self._read = 0
        self._prefix_text: Optional[str] = ""  # decode(ids[prefix:read]); None = not computed yet
        self._shown_past_read = 0  # characters of ids[read:]'s text already shown (before a held tail)
        self._flushed = False
        self._num_context = 0
        self._set_context(list(prompt_ids or [])[-PROMPT_CONTEXT_TOKENS:])

    @property
    def num_output_ids(self) -> int:
        return len(self._ids) - self._num_context

    def add(self, new_ids: Sequence[int]) -> str:
        """Append output ids; return the newly stable text (possibly "")."""
        if self._flushed:
            raise RuntimeError("IncrementalDetokenizer.add() called after flush(); create a new one per request")
        self._ids.extend(int(i) for i in new_ids)
        if len(self._ids) == self._read:
            return ""
        full = self._decode(self._ids[self._prefix:])
        if not full.endswith(REPLACEMENT_CHAR):
            return self._advance(full)
        # The trailing replacement characters may still become real characters once the next
        # token completes their bytes; the text before them is final and can be shown now.
        return self._show_up_to(full, len(full.rstrip(REPLACEMENT_CHAR)))

    def flush(self) -> str:
        """Return all remaining text, stable or not. Call once, when the output is complete."""
        if self._flushed:
            return ""
        self._flushed = True
        if len(self._ids) == self._read:
            return ""
        return self._advance(self._decode(self._ids[self._prefix:]))

    # ---------------------------------------------------------------- internals
    def _set_context(self, context: List[int]) -> None:
        if not context:
            return
        context_text = self._decode(context)
        # A context ending inside a character would merge with the first output bytes, so the
        # text difference would not line up with the output alone; decode without context then.
        if context_text.endswith(REPLACEMENT_CHAR):
            return
        self._ids = context
        self._read = len(context)
        self._num_context = len(context)
        self._prefix_text = context_text

    def _window_start(self) -> int:
        """Offset in decode(ids[prefix:]) where not-yet-shown text begins."""
        if self._prefix_text is None:
            self._prefix_text = self._decode(self._ids[self._prefix:self._read])
        return len(self._prefix_text) + self._shown_past_read

    def _show_up_to(self, full: str, end: int) -> str:
        start = self._window_start()
        if end <= start:
            return ""
        self._shown_past_read += end - start
        return full[start:end]

    def _advance(self, full: str) -> str:
        """Show all of `full` and slide the window: the unread tokens become the context."""
        new_text = full[self._window_start():]
        self._prefix, self._read = self._read, len(self._ids)
        self._prefix_text = None  # decode(ids[prefix:read]) of the new window, computed on demand
        self._shown_past_read = 0
        return new_text

    def _decode(self, ids: List[int]) -> str:
        if not ids:
            return ""
        # spaces_between_special_tokens is honoured by slow tokenizers and ignored by fast ones.
        return self.tokenizer.decode(
            ids,
            skip_special_tokens=self.skip_special_tokens,
            spaces_between_special_tokens=self.spaces_between_special_tokens,
        )
