"""Refuse prompts that cannot fit the context before paying to tokenize them.

A token stands for at most as many bytes of text as its longest vocabulary entry spells (byte-level
BPE writes one character per byte; SentencePiece writes "▁" for a one-byte space; both spellings
are at least as long in UTF-8 as the text they stand for). So a prompt longer than
`context_len * longest_token_bytes` bytes needs more tokens than the context holds, and is
refused without being encoded. The bound is exact arithmetic for such tokenizers; a tokenizer
whose normalizer deletes text could in principle fit more, but such input is not a prompt.
"""

from __future__ import annotations

from typing import Any, List, Optional


def longest_token_bytes(tokenizer: Any) -> Optional[int]:
    """UTF-8 length of the longest vocabulary entry (special tokens included), or None when the
    tokenizer does not expose its vocabulary."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        return None
    try:
        vocab = get_vocab()
    except (NotImplementedError, TypeError, ValueError):
        return None
    return max((len(token.encode("utf-8", "surrogatepass")) for token in vocab if isinstance(token, str)),
               default=None)


class PromptLimits:
    """Size limits of one server's prompts: bytes of text, and number of token ids."""

    def __init__(self, tokenizer: Any, context_len: int):
        self.context_len = context_len
        self.longest_token_bytes = longest_token_bytes(tokenizer) if tokenizer is not None else None
        self.max_text_bytes: Optional[int] = (context_len * self.longest_token_bytes
                                              if self.longest_token_bytes else None)

    def check_text(self, text: str, name: str = "the prompt") -> None:
        """ValueError naming the limit when `text` cannot fit the context once tokenized."""
        limit = self.max_text_bytes
        # A character is at least one UTF-8 byte and at most four: measure bytes only when it matters.
        if limit is None or len(text) * 4 <= limit:
            return
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValueError(
                f"{name} is {size} bytes; at most {limit} bytes of text are accepted (context length "
                f"{self.context_len} tokens x {self.longest_token_bytes} bytes, the longest token), "
                f"so it cannot fit: shorten it")

    def check_ids(self, ids: List[Any], name: str = "the prompt") -> None:
        """ValueError when a token-id prompt leaves no room for one new token (checked on the
        length alone, before its entries are looked at)."""
        if len(ids) >= self.context_len:
            raise ValueError(f"{name} has {len(ids)} tokens but the context length is {self.context_len}; "
                             f"shorten it (it must leave room for at least one new token)")
