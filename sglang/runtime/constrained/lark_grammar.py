"""Per-request matcher of the lark backend: a history of LALR states, masks from a trie walk.

The token mask of a state comes from lark_token_index (numpy over the vocabulary's character
cells, with per-token stepping for the rest); mid-character states use a depth-first walk of the
vocabulary trie that feeds bytes to the LALR driver, where a rejected byte prunes every token
with that prefix. Masks are cached per state on
the shared compiled grammar (bounded), so requests in the same place reuse them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from sglang.runtime.constrained.base_grammar import BaseGrammarObject, eos_only_mask
from sglang.runtime.constrained.grammar_limits import JUMP_CHUNK_CHARS
from sglang.runtime.constrained.lalr_driver import DepthTracker, LALRDriver, State
from sglang.runtime.constrained.lark_token_index import TokenCells, VocabChars, allowed_ids
from sglang.runtime.constrained.vocab_trie import VocabTrie

_TERMINATED = None  # history marker: an EOS was accepted


class CompiledCFG:
    """A grammar bound to one vocabulary, shared by every request using it."""

    def __init__(self, driver: LALRDriver, trie: VocabTrie, token_bytes: Sequence[Optional[bytes]],
                 eos_ids: torch.Tensor, chars: Optional[VocabChars] = None, cache_ids: int = 1 << 22):
        self.driver, self.trie, self.token_bytes, self.eos_ids = driver, trie, token_bytes, eos_ids
        self.tokens = None if chars is None else TokenCells(chars, driver.cells)
        self._masks: "OrderedDict[State, torch.Tensor]" = OrderedDict()
        # Budget in token ids (int32), not states: a string-contents state on a 128k vocabulary
        # holds ~128k ids, a punctuation state a handful. 4M ids = 16 MB per grammar.
        self._cache_ids, self._cached_ids = cache_ids, 0
        self._lock = threading.Lock()
        # top LALR state -> lengths of the stack suffixes its cached masks are keyed by
        self._suffix_lens: Dict[int, set] = {}

    def allowed(self, state: State) -> torch.Tensor:
        """int32 ids of the non-EOS tokens allowed in `state`."""
        stack, pending = state
        if pending:
            keys = [state]
        else:  # the stack suffixes masks with this top were cached under
            keys = [(stack[-k:], b"") for k in self._suffix_lens.get(stack[-1], ()) if k <= len(stack)]
        with self._lock:
            for key in keys:
                found = self._masks.get(key)
                if found is not None:
                    self._masks.move_to_end(key)
                    return found
        if self.tokens is not None and not pending:
            tracker = DepthTracker(self.driver, len(stack))
            found = allowed_ids(tracker, self.tokens, self.token_bytes, stack)
            key = (stack[tracker.low - 1:], b"")  # the entries the computation read
        else:  # mid-character (or no vectorized index): the trie walk
            found, key = self._walk(state), state
        with self._lock:
            if not pending:
                self._suffix_lens.setdefault(stack[-1], set()).add(len(key[0]))
            if key not in self._masks:
                self._masks[key] = found
                self._cached_ids += found.numel()
            while self._cached_ids > self._cache_ids and len(self._masks) > 1:
                self._cached_ids -= self._masks.popitem(last=False)[1].numel()
        return found

    def _walk(self, state: State) -> torch.Tensor:
        children, tokens_at, feed = self.trie.children, self.trie.tokens_at, self.driver.feed_byte
        memo: Dict = {}
        allowed: List[int] = []
        stack: List[Tuple[int, State]] = [(0, state)]
        while stack:
            node, current = stack.pop()
            for byte, child in children[node].items():
                nxt = feed(current, byte, memo)
                if nxt is None:
                    continue
                allowed.extend(tokens_at[child])
                if children[child]:
                    stack.append((child, nxt))
        return torch.tensor(sorted(allowed), dtype=torch.int32)

    def walk_ids(self, state: State) -> torch.Tensor:
        """The trie walk's answer, whatever path `allowed` takes (for cross-checking)."""
        return self._walk(state)

    def step_token(self, state: State, token_id: int) -> Optional[State]:
        spelled = self.token_bytes[token_id] if 0 <= token_id < len(self.token_bytes) else None
        if not spelled:
            return None
        memo: Dict = {}
        for byte in spelled:
            state = self.driver.feed_byte(state, byte, memo)
            if state is None:
                return None
        return state

    def can_end(self, state: State) -> bool:
        return not state[1] and self.driver.accepts_end(state[0])


class LarkGrammar(BaseGrammarObject):
    def __init__(self, compiled: CompiledCFG):
        self.compiled = compiled
        self._eos_set = set(compiled.eos_ids.tolist())
        self._states: List[Optional[State]] = [(compiled.driver.start, b"")]

    @property
    def state(self) -> Optional[State]:
        return self._states[-1]

    def accept_token(self, token_id: int) -> bool:
        current = self.state
        if current is _TERMINATED:
            return False
        if token_id in self._eos_set:
            if not self.compiled.can_end(current):
                return False
            self._states.append(_TERMINATED)
            return True
        nxt = self.compiled.step_token(current, token_id)
        if nxt is None:
            return False
        self._states.append(nxt)
        return True

    def is_terminated(self) -> bool:
        current = self.state
        if current is _TERMINATED:
            return True
        return self.compiled.can_end(current) and not self.compiled.driver.acceptable_cells(current[0])

    def fill_allowed_mask(self, mask_row: torch.Tensor) -> None:
        current = self.state
        if current is _TERMINATED:
            eos_only_mask(mask_row, self.compiled.eos_ids)
            return
        mask_row.fill_(False)
        mask_row.index_fill_(0, self.compiled.allowed(current).to(mask_row.device, torch.int64), True)
        if self.compiled.can_end(current) and self.compiled.eos_ids.numel():
            mask_row.index_fill_(0, self.compiled.eos_ids.to(mask_row.device), True)

    def try_jump_forward(self, max_chars: int = JUMP_CHUNK_CHARS) -> Optional[str]:
        current = self.state
        if current is _TERMINATED or current[1]:
            return None
        return self.compiled.driver.forced_text(current[0], min(max_chars, JUMP_CHUNK_CHARS)) or None

    def rollback(self, num_tokens: int) -> None:
        if num_tokens < 0 or num_tokens >= len(self._states):
            raise ValueError(f"cannot roll back {num_tokens} tokens: only {len(self._states) - 1} were accepted")
        if num_tokens:
            del self._states[-num_tokens:]

    def copy(self) -> "LarkGrammar":
        return LarkGrammar(self.compiled)

    @property
    def num_accepted(self) -> int:
        return len(self._states) - 1
