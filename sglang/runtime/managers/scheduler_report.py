"""What the scheduler reports about itself: the `/get_server_info` state and the idle-time KV
accounting check (tests and the watchdog call it after every run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from sglang.runtime.multimodal.encoder_cache import encoder_cache_stats

if TYPE_CHECKING:
    from sglang.runtime.managers.scheduler import Scheduler


def scheduler_state(sched: "Scheduler") -> dict:
    avail = sched.runner.allocator.available_size()
    total = sched.runner.max_total_num_tokens
    cache = sched.tree_cache
    used = total - avail - cache.evictable_size()
    return {
        "max_total_num_tokens": total,
        "available_kv_tokens": avail + cache.evictable_size(),
        "free_kv_tokens": avail,
        "cached_tokens": cache.total_size(),
        "evictable_tokens": cache.evictable_size(),
        "protected_tokens": cache.protected_size(),
        "num_running_reqs": len(sched.running) + (1 if sched.chunked_req else 0),
        "num_queue_reqs": len(sched.waiting) + len(sched.grammar.pending),
        "token_usage": used / total if total else 0.0,
        "max_running_requests": sched.runner.max_running_requests,
        "context_length": sched.runner.context_len,
        **sched.stats,
        **sched.grammar.manager_stats(),
        **encoder_cache_stats(getattr(sched.runner.model, "encoder_cache", None)),
        **(sched.spec.state() if sched.spec is not None else {}),
    }


def kv_leak(sched: "Scheduler") -> Optional[str]:
    """With no request in flight, every KV slot must be free or held by the unlocked cache."""
    total = sched.runner.max_total_num_tokens
    free = sched.runner.allocator.available_size()
    evictable = sched.tree_cache.evictable_size()
    protected = sched.tree_cache.protected_size()
    if free + evictable != total or protected != 0:
        return f"KV leak: free={free} evictable={evictable} protected={protected} total={total}"
    return None
