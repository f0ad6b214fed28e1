"""The grammar interface the scheduler programs against.

A backend (one per server, bound to the tokenizer) compiles a spec once; each request gets its
own grammar object (`copy()`), which holds the mutable matcher state and shares the compiled
grammar. Token ids are model vocabulary ids: ids at or above len(tokenizer) (padding of the
embedding matrix) are never allowed, nor are tokenizer ids at or above the model's vocab_size.

EOS convention, shared by every backend: the backend's `eos_token_ids` are allowed only where the
grammar may end; once `is_terminated()`, only they are allowed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, List, Optional

import torch

from sglang.runtime.constrained.grammar_limits import JUMP_CHUNK_CHARS
from sglang.runtime.constrained.vocab_bytes import token_bytes_table

GRAMMAR_KINDS = ("regex", "json", "ebnf", "lark")  # "lark": a grammar in Lark's own syntax


class BaseGrammarObject(ABC):
    """Per-request matcher state over one compiled grammar."""

    # Grammars sharing a filler get their batch mask rows in one call (see batch_mask.fill_bitmask).
    batch_filler: Optional[Any] = None

    @abstractmethod
    def accept_token(self, token_id: int) -> bool:
        """Advance by one token; False (state unchanged) if the grammar does not allow it."""

    @abstractmethod
    def is_terminated(self) -> bool:
        """True once an EOS was accepted, or when the text is complete and only EOS may follow."""

    @abstractmethod
    def fill_allowed_mask(self, mask_row: torch.Tensor) -> None:
        """Overwrite `mask_row` ([vocab] bool): True exactly where a token is allowed next.

        A CPU row is fastest; build the batch mask on CPU and move it to the device once."""

    @abstractmethod
    def try_jump_forward(self, max_chars: int = JUMP_CHUNK_CHARS) -> Optional[str]:
        """At most `max_chars` characters of the text every continuation must start with, from
        the current state; None if none (or if the backend cannot bound the work of finding it)."""

    @abstractmethod
    def rollback(self, num_tokens: int) -> None:
        """Undo the last `num_tokens` accepted tokens (EOS included, if it was accepted)."""

    @abstractmethod
    def copy(self) -> "BaseGrammarObject":
        """A fresh matcher at the start state, sharing the compiled grammar."""

    def accept_tokens(self, token_ids: Iterable[int]) -> bool:
        """Accept several tokens; on the first rejection, undo the ones accepted and return False."""
        accepted = 0
        for tid in token_ids:
            if not self.accept_token(tid):
                self.rollback(accepted)
                return False
            accepted += 1
        return True


class BaseGrammarBackend(ABC):
    """Compiles specs for one tokenizer. `compile` may be called from several threads at once."""

    name = "base"
    kinds = ("regex", "json", "ebnf")  # what this backend serves (a subset of GRAMMAR_KINDS)

    def __init__(self, tokenizer: Any, vocab_size: int, **options: Any):
        if vocab_size <= 0:
            raise ValueError(f"vocab_size must be the model's vocabulary size (logits width), got {vocab_size}")
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        eos = options.pop("eos_token_ids", None)
        if eos is None:
            eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
        self.eos_token_ids: List[int] = sorted({int(t) for t in eos if 0 <= int(t) < vocab_size})
        self.options = options

    def vocab_bytes(self) -> List[Optional[bytes]]:
        """Bytes of every usable token id. Tokenizer ids beyond the model's vocabulary (added tokens
        the embedding lacks) are dropped: the model can never produce them."""
        return token_bytes_table(self.tokenizer)[: self.vocab_size]

    def compile(self, kind: str, spec: str) -> BaseGrammarObject:
        """Compile `spec` of `kind` ("regex", "json" (a JSON-schema string), "ebnf" or
        "lark" (Lark syntax; only backends listing it in `kinds`).

        Raises ValueError naming the problem when the spec is invalid or unsupported."""
        if kind not in GRAMMAR_KINDS:
            raise ValueError(f"unknown grammar kind {kind!r}; expected one of {', '.join(GRAMMAR_KINDS)}")
        if not isinstance(spec, str):
            raise ValueError(f"a {kind} grammar must be given as a string, got {type(spec).__name__}")
        if kind not in self.kinds:
            raise ValueError(f"{kind} grammars are not served by the {self.name} grammar backend this server "
                             f"runs; start the server with --grammar-backend lark")
        return self._compile(kind, spec)

    @abstractmethod
    def _compile(self, kind: str, spec: str) -> BaseGrammarObject:
        ...


def eos_only_mask(mask_row: torch.Tensor, eos_ids: torch.Tensor) -> None:
    """Fill `mask_row` so that only the EOS tokens are allowed."""
    mask_row.fill_(False)
    if eos_ids.numel():
        mask_row.index_fill_(0, eos_ids.to(mask_row.device), True)
