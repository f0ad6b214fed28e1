"""Ordering of the waiting queue before each prefill (`--schedule-policy`).

- fcfs: arrival order (retracted requests were put back at the front).
- lof: longest output budget first.
- random: shuffled.
- lpm: longest cached prefix first (maximises reuse right now).
- dfs-weight: walk the radix tree depth-first, heavier subtrees (more waiting requests) first, so
  requests sharing prefixes are admitted together and the shared part stays hot.

Prefix-aware policies fall back to fcfs on very long queues, where matching every request each
step would cost more than it saves.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Callable, Dict, List

from sglang.runtime.managers.req import Req

_PREFIX_POLICY_MAX_QUEUE = 256


class SchedulePolicy:
    def __init__(self, policy: str, tree_cache, seed: int = 0):
        self.policy = policy
        self.tree_cache = tree_cache
        self._rng = random.Random(seed)
        self._order: Dict[str, Callable[[List[Req]], List[Req]]] = {
            "fcfs": lambda q: list(q),
            "lof": lambda q: sorted(q, key=lambda r: -r.sampling_params.max_new_tokens),
            "random": self._random,
            "lpm": self._lpm,
            "dfs-weight": self._dfs_weight,
        }
        if policy not in self._order:
            raise ValueError(f"unknown schedule policy {policy!r}; choose one of {sorted(self._order)}")

    def order(self, waiting: List[Req]) -> List[Req]:
        policy = self.policy
        if policy in ("lpm", "dfs-weight") and (
            self.tree_cache.disabled or len(waiting) > _PREFIX_POLICY_MAX_QUEUE
        ):
            policy = "fcfs"
        return self._order[policy](waiting)

    def _random(self, queue: List[Req]) -> List[Req]:
        out = list(queue)
        self._rng.shuffle(out)
        return out

    def _match_len(self, req: Req):
        req.init_fill_ids()
        match = self.tree_cache.match_prefix(req.cache_key(req.max_prefix_len()))
        return len(match.indices), match.last_node

    def _lpm(self, queue: List[Req]) -> List[Req]:
        lens = {id(r): self._match_len(r)[0] for r in queue}
        return sorted(queue, key=lambda r: -lens[id(r)])  # stable: ties keep arrival order

    def _dfs_weight(self, queue: List[Req]) -> List[Req]:
        by_node = defaultdict(list)
        for req in queue:
            by_node[self._match_len(req)[1]].append(req)
        weight: Dict[int, int] = defaultdict(int)
        children = defaultdict(list)
        for node, reqs in by_node.items():
            weight[id(node)] += len(reqs)
            cur = node
            while cur.parent is not None:
                parent = cur.parent
                if cur not in children[id(parent)]:
                    children[id(parent)].append(cur)
                weight[id(parent)] += len(reqs)
                cur = parent
        root = self.tree_cache.root_node
        out: List[Req] = []
        stack = [root]
        while stack:
            node = stack.pop()
            out.extend(by_node.get(node, []))
            kids = sorted(children.get(id(node), []), key=lambda n: weight[id(n)])
            stack.extend(kids)  # heaviest popped first
        return out
