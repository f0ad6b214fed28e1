"""EAGLE's draft tree: growing it (EAGLE-2's dynamic tree), choosing the nodes to verify, and
walking it against the target's choices.

Node 0 is the root: the request's newest token (already emitted, KV not yet written). Every other
node is a drafted token with the cumulative log-probability of its path under the draft head.
Growing keeps the `topk` best nodes of each depth as the next frontier; `select` keeps the
`max_nodes` best drafted nodes over all depths. A child never scores above its parent (its
log-probability is <= 0), and ties go to the shallower node, so the kept set always holds every
kept node's parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple


@dataclass
class DraftTree:
    """Nodes in topological order (every parent before its children), root first."""

    tokens: List[int]
    parents: List[int]  # -1 for the root
    depths: List[int] = field(default_factory=list)
    children: List[List[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.depths:
            self.depths = [0] * len(self.parents)
            for i, p in enumerate(self.parents):
                if p >= i:
                    raise ValueError(f"node {i}'s parent {p} does not come before it")
                self.depths[i] = 0 if p < 0 else self.depths[p] + 1
        self.children = [[] for _ in self.tokens]
        for i, p in enumerate(self.parents):
            if p >= 0:
                self.children[p].append(i)

    @classmethod
    def chain(cls, root: int, drafts: Sequence[int]) -> "DraftTree":
        return cls([root, *drafts], list(range(-1, len(drafts))))

    def __len__(self) -> int:
        return len(self.tokens)

    def path(self, node: int) -> List[int]:
        """Nodes from the root to `node`, both included."""
        out = []
        while node >= 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def leaves(self) -> List[int]:
        return [i for i, c in enumerate(self.children) if not c]

    def leaf_of(self) -> List[int]:
        """For every node, a leaf below it (first children all the way down)."""
        out = list(range(len(self)))
        for i in reversed(range(len(self))):
            if self.children[i]:
                out[i] = out[self.children[i][0]]
        return out

    def child_with(self, node: int, token: int) -> Optional[int]:
        for c in self.children[node]:
            if self.tokens[c] == token:
                return c
        return None

    def keep(self, keep: Callable[[int], bool]) -> "DraftTree":
        """The subtree of nodes for which `keep` holds and whose ancestors are all kept."""
        new_index = {}
        tokens, parents = [], []
        for i, (tok, p) in enumerate(zip(self.tokens, self.parents)):
            if (p < 0 or p in new_index) and (p < 0 or keep(i)):
                new_index[i] = len(tokens)
                tokens.append(tok)
                parents.append(-1 if p < 0 else new_index[p])
        return DraftTree(tokens, parents)


class TreeGrower:
    """Candidate nodes while drafting: (token, parent, depth, score)."""

    def __init__(self, root_token: int):
        self.tokens = [root_token]
        self.parents = [-1]
        self.depths = [0]
        self.scores = [0.0]
        self.slot: dict = {}  # node -> KV slot of its head entry while drafting

    def add(self, parent: int, token: int, logprob: float) -> int:
        self.tokens.append(int(token))
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1)
        self.scores.append(self.scores[parent] + float(logprob))
        return len(self.tokens) - 1

    def best(self, candidates: Sequence[int], k: int) -> List[int]:
        return sorted(candidates, key=self._rank)[:k]

    def _rank(self, i: int) -> Tuple[float, int, int]:
        return (-self.scores[i], self.depths[i], i)

    def select(self, max_nodes: int) -> DraftTree:
        """The root and the `max_nodes` best drafted nodes, as a DraftTree."""
        kept = set(self.best(range(1, len(self.tokens)), max_nodes))
        order = sorted(kept, key=lambda i: (self.depths[i], i))
        index = {0: 0}
        tokens, parents = [self.tokens[0]], [-1]
        for i in order:
            p = self.parents[i]
            if p not in index:  # unreachable by the ranking; kept as a guard against float ties
                continue
            index[i] = len(tokens)
            tokens.append(self.tokens[i])
            parents.append(index[p])
        return DraftTree(tokens, parents)


def walk(tree: DraftTree, choice: Callable[[int], int]) -> Tuple[List[int], List[int]]:
    """Verification: at each node take the target's token for it (`choice(node)`: greedy argmax
    or a draw from the target distribution at that node); move to the child holding that token,
    or stop. Returns (accepted path nodes from the root, emitted tokens = the accepted children's
    tokens + the last choice). Each emitted token is exactly what plain decoding would produce
    given the ones before it."""
    node, path, emitted = 0, [0], []
    while True:
        tok = choice(node)
        emitted.append(tok)
        child = tree.child_with(node, tok)
        if child is None:
            return path, emitted
        path.append(child)
        node = child
