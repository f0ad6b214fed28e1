"""RadixAttention's prefix cache: a radix tree over token ids whose edges hold KV slot indices.

- match_prefix walks the tree and splits the node where a match ends inside an edge, so the matched
  prefix is always a whole path that can be locked.
- insert adds the unmatched tail as a new leaf and reports how much was already present; the
  tree keeps its own slots for that part and the caller frees its duplicates.
- Requests lock their last node; a lock protects the whole path to the root from eviction.
- evict frees least-recently-used unlocked leaves until enough slots are free. Recency is a
  per-cache counter rather than wall time so that eviction order is deterministic and testable.
- evictable/protected sizes are running counters updated in O(depth), never recomputed.
"""

from __future__ import annotations

import heapq
from typing import Any, Dict, Iterator, List, Optional

import torch

from sglang.runtime.mem_cache.base_prefix_cache import BasePrefixCache, MatchResult, empty_indices

_PRINT_TOKENS = 8  # tokens of each edge shown by pretty_print


class TreeNode:
    """One edge of the radix tree. Hashable by identity (the scheduler keys dicts by node)."""

    __slots__ = ("key", "value", "parent", "children", "lock_ref", "last_access_time")

    def __init__(self, key: List[int], value: torch.Tensor, parent: Optional["TreeNode"], tick: int):
        self.key = key  # token ids on the edge from the parent to this node
        self.value = value  # int64 CPU KV slots, one per key token
        self.parent = parent
        self.children: Dict[int, TreeNode] = {}  # keyed by the child's first token id
        self.lock_ref = 0
        self.last_access_time = tick

    def is_leaf(self) -> bool:
        return not self.children

    def __len__(self) -> int:
        return len(self.key)

    def __repr__(self) -> str:
        return f"TreeNode(len={len(self.key)}, lock_ref={self.lock_ref}, t={self.last_access_time})"


def _common_len(edge: List[int], key: List[int], start: int) -> int:
    """Length of the common prefix of `edge` and key[start:]."""
    n = min(len(edge), len(key) - start)
    if edge[:n] == key[start : start + n]:  # fast path: C-level list compare
        return n
    i = 0
    while edge[i] == key[start + i]:
        i += 1
    return i


class RadixCache(BasePrefixCache):
    disabled = False

    def __init__(self, req_to_token_pool: Any, allocator: Any):
        super().__init__(req_to_token_pool, allocator)
        self._tick = 0
        self.root_node = TreeNode([], empty_indices(), None, 0)
        self._evictable = 0
        self._protected = 0

    # ---------------------------------------------------------------- lookup / insert
    def match_prefix(self, key: List[int]) -> MatchResult:
        tick = self._next_tick()
        node = self.root_node
        node.last_access_time = tick
        parts: List[torch.Tensor] = []
        pos = 0
        while pos < len(key):
            child = node.children.get(key[pos])
            if child is None:
                break
            common = _common_len(child.key, key, pos)
            if common < len(child.key):
                child = self._split(child, common)
            child.last_access_time = tick
            parts.append(child.value)
            node = child
            pos += common  # after a split, the next lookup misses (or the key is used up)
        indices = torch.cat(parts) if parts else empty_indices()
        return MatchResult(indices=indices, last_node=node)

    def insert(self, key: List[int], value: torch.Tensor) -> int:
        if len(key) != len(value):
            raise ValueError(f"insert needs one KV slot per token: got {len(key)} tokens, {len(value)} slots")
        value = value.to(device="cpu", dtype=torch.int64)
        tick = self._next_tick()
        node = self.root_node
        node.last_access_time = tick
        pos = 0
        while pos < len(key):
            child = node.children.get(key[pos])
            if child is None:
                self._add_leaf(node, key[pos:], value[pos:].clone(), tick)
                return pos
            common = _common_len(child.key, key, pos)
            if common < len(child.key):
                child = self._split(child, common)
            child.last_access_time = tick
            node = child
            pos += common
        return pos

    # ---------------------------------------------------------------- request hooks
    def cache_finished_req(self, req: Any) -> None:
        """Hand the request's written KV to the tree, release its lock and its req_to_token row."""
        if req.req_pool_idx is None:
            self.dec_lock_ref(req.last_node)
            req.last_node = None
            return
        self._insert_request(req)
        self.dec_lock_ref(req.last_node)
        self.req_to_token_pool.free(req.req_pool_idx)
        req.req_pool_idx = None
        req.last_node = None
        req.prefix_indices = empty_indices()

    def cache_unfinished_req(self, req: Any) -> None:
        """Move the request's written KV into the tree and re-lock it there (chunked prefill,
        retraction); the request keeps its row, now pointing at the tree's slots."""
        key = self._insert_request(req)
        match = self.match_prefix(key)
        assert len(match.indices) == len(key), "a just-inserted key must match in full"
        self.req_to_token_pool.write(req.req_pool_idx, 0, len(key), match.indices)
        # Lock the new node before unlocking the old one: their shared path never looks evictable.
        self.inc_lock_ref(match.last_node)
        self.dec_lock_ref(req.last_node)
        req.prefix_indices = match.indices
        req.last_node = match.last_node

    def _insert_request(self, req: Any) -> List[int]:
        """Insert the request's committed tokens and free its slots that duplicate the tree's."""
        key = self.committed_key(req)
        value = self.committed_slots(req)
        n_prefix = len(req.prefix_indices)
        n_dup = self.insert(key, value)
        # The request's locked prefix is in the tree, so insert must have found at least that much.
        assert n_dup >= n_prefix, f"locked prefix of {n_prefix} tokens missing from the tree (found {n_dup})"
        if n_dup > n_prefix:
            self.allocator.free(value[n_prefix:n_dup])
        return key

    # ---------------------------------------------------------------- locks
    def inc_lock_ref(self, node: Optional[TreeNode]) -> None:
        while node is not None and node is not self.root_node:
            if node.lock_ref == 0:
                self._evictable -= len(node)
                self._protected += len(node)
            node.lock_ref += 1
            node = node.parent

    def dec_lock_ref(self, node: Optional[TreeNode]) -> None:
        while node is not None and node is not self.root_node:
            assert node.lock_ref > 0, f"dec_lock_ref below zero on {node!r}: a lock was released twice"
            node.lock_ref -= 1
            if node.lock_ref == 0:
                self._protected -= len(node)
                self._evictable += len(node)
            node = node.parent

    # ---------------------------------------------------------------- eviction
    def evict(self, num_tokens: int) -> int:
        heap = [(n.last_access_time, id(n), n) for n in self._nodes() if self._evictable_leaf(n)]
        heapq.heapify(heap)
        freed = 0
        while freed < num_tokens and heap:
            _, _, node = heapq.heappop(heap)
            freed += self._delete_leaf(node)
            parent = node.parent
            if self._evictable_leaf(parent):  # evicting its last child made it a leaf
                heapq.heappush(heap, (parent.last_access_time, id(parent), parent))
        return freed

    def _evictable_leaf(self, node: TreeNode) -> bool:
        return node is not self.root_node and node.is_leaf() and node.lock_ref == 0

    def _delete_leaf(self, node: TreeNode) -> int:
        self.allocator.free(node.value)
        del node.parent.children[node.key[0]]
        self._evictable -= len(node)
        return len(node)

    # ---------------------------------------------------------------- sizes / admin
    def evictable_size(self) -> int:
        return self._evictable

    def protected_size(self) -> int:
        return self._protected

    def total_size(self) -> int:
        return self._evictable + self._protected

    def reset(self) -> None:
        if self._protected:
            raise RuntimeError(
                f"cannot reset the radix cache while requests lock {self._protected} tokens; "
                "finish or abort running requests first"
            )
        for node in self._nodes():
            if node is not self.root_node:
                self.allocator.free(node.value)
        self.root_node = TreeNode([], empty_indices(), None, self._next_tick())
        self._evictable = 0

    def pretty_print(self) -> str:
        lines = [f"root (total={self.total_size()} evictable={self._evictable} protected={self._protected})"]
        stack = [(c, 1) for _, c in sorted(self.root_node.children.items(), reverse=True)]
        while stack:
            node, depth = stack.pop()
            shown = node.key[:_PRINT_TOKENS]
            more = "..." if len(node.key) > _PRINT_TOKENS else ""
            lines.append(f"{'  ' * depth}{shown}{more} len={len(node)} lock={node.lock_ref}")
            stack.extend((c, depth + 1) for _, c in sorted(node.children.items(), reverse=True))
        return "\n".join(lines)

    def all_nodes(self) -> Iterator[TreeNode]:
        """Every node including the root (for introspection and tests)."""
        return self._nodes()

    # ---------------------------------------------------------------- internals
    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    def _nodes(self) -> Iterator[TreeNode]:
        stack = [self.root_node]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

    def _add_leaf(self, parent: TreeNode, key: List[int], value: torch.Tensor, tick: int) -> TreeNode:
        leaf = TreeNode(key, value, parent, tick)
        parent.children[key[0]] = leaf
        self._evictable += len(leaf)  # lock_ref 0: a new leaf is evictable until someone locks it
        return leaf

    def _split(self, node: TreeNode, at: int) -> TreeNode:
        """Cut node's edge after `at` tokens; return the new upper node.

        `node` keeps its identity as the lower part because requests may hold it as last_node.
        The upper node lies on exactly the paths through `node`, so it inherits its lock count
        and recency; sizes do not change (the tokens keep their lock state).
        """
        upper = TreeNode(node.key[:at], node.value[:at], node.parent, node.last_access_time)
        upper.lock_ref = node.lock_ref
        upper.children = {node.key[at]: node}
        node.parent.children[node.key[0]] = upper
        node.key = node.key[at:]
        node.value = node.value[at:]
        node.parent = upper
        return upper
