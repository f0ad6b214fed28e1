"""Keeping decode steps within KV memory: the adaptive new-token ratio and retraction.

Admission reserves `ratio * remaining_output` tokens per running request. The ratio starts
optimistic and decays (most requests stop well before max_new_tokens); when a decode step cannot
get a slot per request, we first evict unlocked cache, then retract the least-advanced requests:
their KV goes into the radix tree (so re-prefill is mostly a cache hit) and they rejoin the front
of the waiting queue, to finish later with the same greedy output. The ratio then jumps back up.
"""

from __future__ import annotations

import logging
from typing import List

from sglang.runtime.managers.req import Req

logger = logging.getLogger(__name__)


class NewTokenRatio:
    def __init__(self, conservativeness: float = 1.0, decay_steps: int = 600):
        self.init = min(0.7 * conservativeness, 1.0)
        self.min = min(0.15 * conservativeness, self.init)
        self.decay = (self.init - self.min) / decay_steps
        self.value = self.init

    def step(self) -> None:
        self.value = max(self.value - self.decay, self.min)

    def on_retract(self) -> None:
        self.value = 1.0


def retract_for_decode(running: List[Req], allocator, tree_cache) -> List[Req]:
    """Retract requests until every remaining one can get a KV slot. Returns the retracted ones
    (already detached from memory), least-advanced first."""

    def available() -> int:
        return allocator.available_size() + tree_cache.evictable_size()

    if available() >= len(running):
        return []
    # Least progress first; among equals, the one holding more memory goes first.
    order = sorted(running, key=lambda r: (r.num_output_tokens, -r.kv_committed_len))
    retracted: List[Req] = []
    while available() < len(running) - len(retracted) and len(retracted) < len(running) - 1:
        req = order[len(retracted)]
        tree_cache.cache_finished_req(req)
        req.reset_memory_state()
        req.num_retractions += 1
        retracted.append(req)
    if available() < len(running) - len(retracted):
        # One request alone outgrew the whole pool (admission clamps prevent this normally).
        last = order[len(retracted)]
        last.to_abort = (
            "KV cache too small for this request; increase --max-total-tokens or --mem-fraction-static"
        )
    logger.info("retracted %d request(s) to free KV memory", len(retracted))
    return retracted
