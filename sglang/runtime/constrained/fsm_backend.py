"""The "fsm" grammar backend: regexes (and JSON schemas translated to regexes) on our RegexFSM.

Compiled FSMs are cached per regex on the backend, and the backend is bound to one tokenizer,
so the cache is per (regex, tokenizer) as the token index requires. EBNF is not regular and is
rejected with a pointer to the xgrammar backend. Size limits are checked by CharFSM before
interegular expands anything (see grammar_limits).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, List, Optional

import torch

from sglang.runtime.constrained.base_grammar import BaseGrammarBackend, BaseGrammarObject, eos_only_mask
from sglang.runtime.constrained.grammar_limits import JUMP_CHUNK_CHARS, check_schema_counts
from sglang.runtime.constrained.json_schema_regex import DEFAULT_WHITESPACE_PATTERN, json_schema_to_regex, load_schema
from sglang.runtime.constrained.regex_fsm import RegexFSM
from sglang.runtime.constrained.vocab_trie import VocabTrie

_TERMINATED = -2  # history marker: an EOS was accepted


class FSMGrammar(BaseGrammarObject):
    def __init__(self, fsm: RegexFSM, eos_ids: torch.Tensor):
        self.fsm = fsm
        self._eos_ids = eos_ids
        self._eos_set = set(eos_ids.tolist())
        self._states: List[int] = [fsm.start]  # state after each accepted token

    @property
    def state(self) -> int:
        return self._states[-1]

    def accept_token(self, token_id: int) -> bool:
        current = self.state
        if current == _TERMINATED:
            return False
        if token_id in self._eos_set:
            if not self.fsm.is_final(current):
                return False
            self._states.append(_TERMINATED)
            return True
        nxt = self.fsm.next_state(current, token_id)
        if nxt < 0:
            return False
        self._states.append(nxt)
        return True

    def is_terminated(self) -> bool:
        current = self.state
        return current == _TERMINATED or (self.fsm.is_final(current) and not self.fsm.can_continue(current))

    def fill_allowed_mask(self, mask_row: torch.Tensor) -> None:
        current = self.state
        if current == _TERMINATED:
            eos_only_mask(mask_row, self._eos_ids)
            return
        index = self.fsm.index(current)
        mask_row.fill_(False)
        mask_row.index_fill_(0, index.allowed.to(mask_row.device), True)
        if index.is_final and self._eos_ids.numel():
            mask_row.index_fill_(0, self._eos_ids.to(mask_row.device), True)

    def try_jump_forward(self, max_chars: int = JUMP_CHUNK_CHARS) -> Optional[str]:
        current = self.state
        if current == _TERMINATED:
            return None
        return self.fsm.jump_forward(current, max_chars) or None

    def rollback(self, num_tokens: int) -> None:
        if num_tokens < 0 or num_tokens >= len(self._states):
            raise ValueError(
                f"cannot roll back {num_tokens} tokens: only {len(self._states) - 1} were accepted"
            )
        if num_tokens:
            del self._states[-num_tokens:]

    def copy(self) -> "FSMGrammar":
        return FSMGrammar(self.fsm, self._eos_ids)

    @property
    def num_accepted(self) -> int:
        return len(self._states) - 1


class FSMGrammarBackend(BaseGrammarBackend):
    """Options: eos_token_ids, whitespace_pattern (JSON translator), cache_size (regexes kept)."""

    name = "fsm"

    def __init__(self, tokenizer: Any, vocab_size: int, **options: Any):
        super().__init__(tokenizer, vocab_size, **options)
        pattern = self.options.get("whitespace_pattern")
        self.whitespace_pattern: str = DEFAULT_WHITESPACE_PATTERN if pattern is None else pattern  # "" = compact
        self._cache_size: int = int(self.options.get("cache_size", 256))
        self._trie = VocabTrie(self.vocab_bytes())
        self._eos_ids = torch.tensor(self.eos_token_ids, dtype=torch.int64)
        self._fsms: "OrderedDict[str, RegexFSM]" = OrderedDict()
        self._lock = threading.Lock()

    def _compile(self, kind: str, spec: str) -> FSMGrammar:
        if kind == "ebnf":
            raise ValueError(
                "EBNF grammars are not supported by the fsm grammar backend (EBNF is not regular); "
                "start the server with --grammar-backend xgrammar"
            )
        if kind == "json":
            schema = load_schema(spec)
            check_schema_counts(schema)
            regex = json_schema_to_regex(schema, self.whitespace_pattern)
        else:
            regex = spec
        fsm = self.regex_fsm(regex)
        fsm.index(fsm.start)  # build the first state's index here, off the scheduler thread
        return FSMGrammar(fsm, self._eos_ids)

    def regex_fsm(self, regex: str) -> RegexFSM:
        """The shared RegexFSM for `regex` (compiled on first use; LRU-bounded)."""
        with self._lock:
            fsm = self._fsms.get(regex)
            if fsm is not None:
                self._fsms.move_to_end(regex)
                return fsm
        fsm = RegexFSM(regex, self._trie)  # compiled outside the lock: may take a while
        with self._lock:
            fsm = self._fsms.setdefault(regex, fsm)
            self._fsms.move_to_end(regex)
            while len(self._fsms) > self._cache_size:
                self._fsms.popitem(last=False)
        return fsm
