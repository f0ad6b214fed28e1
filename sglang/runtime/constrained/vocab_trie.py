"""A byte trie over the vocabulary, so one walk visits every token sharing a prefix only once.

Building a state's token index is a depth-first walk of this trie alongside the byte automaton:
a dead automaton state prunes the whole subtree (all tokens with that prefix) at once. That is
what makes a lazily built per-state index affordable on 100k+ token vocabularies.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence


class VocabTrie:
    """Nodes are ints; node 0 is the root (the empty prefix)."""

    def __init__(self, token_bytes: Sequence[Optional[bytes]]):
        self.children: List[Dict[int, int]] = [{}]
        self.tokens_at: List[List[int]] = [[]]  # token ids spelled exactly by the path to a node
        for tid, spelled in enumerate(token_bytes):
            if spelled:
                self._insert(tid, spelled)

    def _insert(self, tid: int, spelled: bytes) -> None:
        node = 0
        for byte in spelled:
            nxt = self.children[node].get(byte)
            if nxt is None:
                nxt = len(self.children)
                self.children.append({})
                self.tokens_at.append([])
                self.children[node][byte] = nxt
            node = nxt
        self.tokens_at[node].append(tid)

    @property
    def num_nodes(self) -> int:
        return len(self.children)
