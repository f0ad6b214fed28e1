"""Our regex FSM: interegular -> character DFA -> UTF-8 byte DFA -> token-level index.

The token-level index of a state lists every vocabulary token that can be consumed from it and
the state each one leads to. It is built lazily, the first time a state is reached, by walking the
vocabulary trie alongside the byte automaton, and then kept: one `RegexFSM` per (regex,
tokenizer) serves every request using that regex (the backend caches it).

Jump-forward (the "compressed FSM"): from a state where the character automaton admits exactly
one character and cannot end, that character is forced; the chain of forced characters is the
string the runtime may append without decoding. The chain is walked lazily and never past
JUMP_CHUNK_CHARS characters (a longer one is jumped a chunk at a time).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List

import torch

from sglang.runtime.constrained.char_fsm import CharFSM
from sglang.runtime.constrained.grammar_limits import JUMP_CHUNK_CHARS
from sglang.runtime.constrained.utf8_automaton import Utf8Automaton
from sglang.runtime.constrained.vocab_trie import VocabTrie


@dataclass
class StateIndex:
    """Token-level view of one byte state."""

    allowed: torch.Tensor  # int64 token ids that may be consumed here (CPU)
    next_state: Dict[int, int]  # token id -> byte state after it
    is_final: bool  # the text so far is a full match (EOS may follow)


class RegexFSM:
    """Compiled regex bound to one vocabulary. Thread-safe; grammar objects share it."""

    def __init__(self, regex: str, trie: VocabTrie):
        self.regex = regex
        self.bytes = Utf8Automaton(CharFSM(regex))
        self.start: int = self.bytes.start
        self._trie = trie
        self._index: Dict[int, StateIndex] = {}
        self._jumps: Dict[int, str] = {}
        # Index construction mutates the byte automaton; requests of one regex may be compiled
        # and stepped from different threads (compile workers, scheduler).
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- token level
    def index(self, state: int) -> StateIndex:
        found = self._index.get(state)
        if found is not None:
            return found
        with self._lock:
            found = self._index.get(state)
            if found is None:
                found = self._build_index(state)
                self._index[state] = found
        return found

    def _build_index(self, state: int) -> StateIndex:
        children, tokens_at = self._trie.children, self._trie.tokens_at
        step = self.bytes.step
        next_state: Dict[int, int] = {}
        stack = [(0, state)]
        while stack:
            node, current = stack.pop()
            for byte, child in children[node].items():
                target = step(current, byte)
                if target < 0:
                    continue  # prunes every token that starts with this prefix
                for tid in tokens_at[child]:
                    next_state[tid] = target
                if children[child]:
                    stack.append((child, target))
        allowed = torch.tensor(sorted(next_state), dtype=torch.int64)
        return StateIndex(allowed=allowed, next_state=next_state, is_final=self.bytes.is_final(state))

    def next_state(self, state: int, token_id: int) -> int:
        """State after consuming `token_id`, or -1 if the token is not allowed."""
        return self.index(state).next_state.get(token_id, -1)

    def is_final(self, state: int) -> bool:
        return self.bytes.is_final(state)

    def can_continue(self, state: int) -> bool:
        """Whether any non-EOS token is allowed (False: only EOS may follow)."""
        return len(self.index(state).next_state) > 0

    # ---------------------------------------------------------------- jump-forward
    def jump_forward(self, state: int, max_chars: int = JUMP_CHUNK_CHARS) -> str:
        """The first `max_chars` (at most JUMP_CHUNK_CHARS) characters of the forced continuation
        from `state` ("" if none, or mid-way through a character)."""
        found = self._jumps.get(state)
        if found is None:
            char_state, pending = self.bytes.key(state)
            found = "" if pending else self._forced_chain(char_state)
            self._jumps[state] = found  # a plain dict write: racing writers store equal values
        return found[:max(max_chars, 0)]

    def _forced_chain(self, char_state: int) -> str:
        chars: List[str] = []
        while len(chars) < JUMP_CHUNK_CHARS:
            ch = self.bytes.chars.forced_char(char_state)
            if ch is None:
                break
            chars.append(ch)
            char_state = self.bytes.chars.step(char_state, ch)
        return "".join(chars)

    @property
    def num_indexed_states(self) -> int:
        return len(self._index)
