"""Choosing the data-parallel replica for each request (`--load-balance-method`).

Pure bookkeeping, no sockets: the tokenizer manager calls `choose` when it sends a request and
`finish` when the request ends.

- round_robin: replicas in turn.
- shortest_queue: the replica with the fewest requests in flight (ties rotate).
- cache_aware: each replica keeps an approximate record of the prompts it was sent, as chained
  hashes of fixed-size token blocks (block k's key hashes block k with block k-1's key, so a key
  stands for the whole prefix up to it: a prefix tree with hashed edges). A request goes to the
  replica whose record matches the longest prefix of its prompt, when that match covers at least
  `min_prefix_fraction` of the prompt and `min_prefix_tokens` tokens and that replica is not
  overloaded (more than `balance_abs_threshold` requests above the least loaded); otherwise to
  the least loaded replica. The record is approximate (the replica's radix cache may have evicted
  it) and bounded: `max_blocks_per_replica` keys with least-recently-used eviction.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Sequence

LOAD_BALANCE_METHODS = ("round_robin", "shortest_queue", "cache_aware")


@dataclass
class Dispatch:
    replica: int
    matched_tokens: int  # prompt tokens the replica's record held before this request (cache_aware)


class PrefixRecord:
    """One replica's approximate cache: chained block hashes, LRU-bounded."""

    def __init__(self, block_size: int, max_blocks: int) -> None:
        self.block_size = block_size
        self.max_blocks = max_blocks
        self.keys: "OrderedDict[int, None]" = OrderedDict()

    def block_keys(self, ids: Sequence[int]) -> List[int]:
        keys, key, b = [], 0, self.block_size
        for start in range(0, len(ids) - b + 1, b):
            key = hash((key, tuple(ids[start:start + b])))
            keys.append(key)
        return keys

    def match(self, keys: List[int]) -> int:
        """Tokens of the longest recorded prefix."""
        n = 0
        for key in keys:
            if key not in self.keys:
                break
            n += 1
        return n * self.block_size

    def insert(self, keys: List[int]) -> None:
        # Deepest block first, root last: the root becomes the most recent, so eviction trims
        # prefixes from their tails and a shared root survives longest.
        for key in reversed(keys):
            self.keys[key] = None
            self.keys.move_to_end(key)
        while len(self.keys) > self.max_blocks:
            self.keys.popitem(last=False)

    def clear(self) -> None:
        self.keys.clear()

    def __len__(self) -> int:
        return len(self.keys)


class ReplicaRouter:
    def __init__(self, num_replicas: int, method: str = "cache_aware", block_size: int = 16,
                 min_prefix_tokens: int = 16, min_prefix_fraction: float = 0.5,
                 balance_abs_threshold: int = 32, max_blocks_per_replica: int = 1 << 16) -> None:
        if num_replicas < 1:
            raise ValueError(f"the router needs at least one replica, got {num_replicas}")
        if method not in LOAD_BALANCE_METHODS:
            raise ValueError(f"load_balance_method must be one of {LOAD_BALANCE_METHODS}, got {method!r}")
        if block_size < 1 or max_blocks_per_replica < 1:
            raise ValueError("block_size and max_blocks_per_replica must be >= 1")
        self.method = method
        self.min_prefix_tokens = min_prefix_tokens
        self.min_prefix_fraction = min_prefix_fraction
        self.balance_abs_threshold = balance_abs_threshold
        self.loads = [0] * num_replicas
        self.records = [PrefixRecord(block_size, max_blocks_per_replica) for _ in range(num_replicas)]
        self._next = 0  # round-robin position, also the tie-break start for the least loaded

    @property
    def num_replicas(self) -> int:
        return len(self.loads)

    def choose(self, input_ids: Sequence[int]) -> Dispatch:
        """The replica for a request with this prompt; counts it as in flight there."""
        if self.method == "round_robin":
            dispatch = Dispatch(self._next % self.num_replicas, 0)
        elif self.method == "shortest_queue":
            dispatch = Dispatch(self._least_loaded(), 0)
        else:
            dispatch = self._cache_aware(input_ids)
        self._next = dispatch.replica + 1
        self.loads[dispatch.replica] += 1
        return dispatch

    def finish(self, replica: int) -> None:
        """A request sent to `replica` ended (finished, aborted or failed)."""
        if self.loads[replica] > 0:
            self.loads[replica] -= 1

    def clear_cache(self) -> None:
        """The replicas' caches were flushed: forget what they held."""
        for record in self.records:
            record.clear()

    def _least_loaded(self) -> int:
        n = self.num_replicas
        return min(range(n), key=lambda r: (self.loads[r], (r - self._next) % n))

    def _cache_aware(self, input_ids: Sequence[int]) -> Dispatch:
        keys = self.records[0].block_keys(input_ids)
        matches = [record.match(keys) for record in self.records]
        best = max(range(self.num_replicas), key=lambda r: (matches[r], -self.loads[r]))
        long_enough = (matches[best] >= self.min_prefix_tokens
                       and matches[best] >= self.min_prefix_fraction * len(input_ids))
        not_overloaded = self.loads[best] - min(self.loads) <= self.balance_abs_threshold
        replica = best if long_enough and not_overloaded else self._least_loaded()
        self.records[replica].insert(keys)
        return Dispatch(replica, matches[replica])


# State keys that are the same on every replica or a ratio: not summed.
_SHARED_STATE_KEYS = ("context_length",)
_MEAN_STATE_KEYS = ("token_usage",)


def merge_replica_states(states: List[dict]) -> dict:
    """One server state from the replicas' (`Scheduler.server_state`): counts and capacities
    summed, ratios averaged, anything else from replica 0; each replica's own state under
    "replicas" when there are several."""
    if len(states) == 1:
        return states[0]
    merged = dict(states[0])
    for key, value in states[0].items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or key in _SHARED_STATE_KEYS:
            continue
        values = [state.get(key, 0) for state in states]
        merged[key] = sum(values) / len(values) if key in _MEAN_STATE_KEYS else sum(values)
    merged["replicas"] = [dict(state, replica=i) for i, state in enumerate(states)]
    return merged
