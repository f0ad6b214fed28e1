"""What the scheduler uses: off-thread grammar compilation with a (kind, spec) cache and metrics.

`submit` never blocks the scheduler loop: compilation runs on a small thread pool and the caller
polls (or waits on) the returned future. Every request gets its own grammar object (a `copy()` of
the cached compiled one), so matcher state is never shared. Failed compilations are cached too:
a bad spec fails the same way every time, and resubmitting it costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from sglang.runtime.constrained.base_grammar import BaseGrammarObject
from sglang.runtime.constrained.registry import create_backend

# Upper bounds (seconds) of the compile-time histogram buckets; the last one catches the rest.
COMPILE_TIME_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, float("inf"))


def grammar_kind_of(sampling_params: Any) -> Optional[Tuple[str, str]]:
    """("regex" | "json" | "ebnf" | "lark", spec) from SamplingParams.regex / json_schema / ebnf /
    lark, or None."""
    for attr, kind in (("regex", "regex"), ("json_schema", "json"), ("ebnf", "ebnf"), ("lark", "lark")):
        spec = getattr(sampling_params, attr, None)
        if spec is not None:
            return kind, spec
    return None


@dataclass
class _Stats:
    compiles: int = 0
    cache_hits: int = 0
    failures: int = 0
    compile_time_sum_s: float = 0.0
    bucket_counts: List[int] = field(default_factory=lambda: [0] * len(COMPILE_TIME_BUCKETS))

    def record_compile(self, seconds: float, ok: bool) -> None:
        self.compiles += 1
        self.failures += 0 if ok else 1
        self.compile_time_sum_s += seconds
        for i, bound in enumerate(COMPILE_TIME_BUCKETS):
            if seconds <= bound:
                self.bucket_counts[i] += 1
                break


class GrammarManager:
    def __init__(
        self,
        backend_name: str,
        tokenizer: Any,
        vocab_size: int,
        eos_token_ids: Iterable[int],
        whitespace_pattern: Optional[str] = None,
        max_workers: int = 2,
        cache_size: int = 512,
    ):
        self.backend = create_backend(
            backend_name, tokenizer, vocab_size,
            eos_token_ids=set(eos_token_ids), whitespace_pattern=whitespace_pattern,
        )
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grammar-compile")
        self._cache: "OrderedDict[Tuple[str, str], Future]" = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # guards _cache and _stats (callbacks run on worker threads)
        self._stats = _Stats()

    def submit(self, kind: str, spec: str) -> "Future[BaseGrammarObject]":
        """Future of a fresh grammar object for (kind, spec); raises ValueError if the spec is bad."""
        key = (kind, spec)
        with self._lock:
            template = self._cache.get(key)
            if template is not None:
                self._stats.cache_hits += 1
                self._cache.move_to_end(key)
            else:
                template = self._executor.submit(self._compile, kind, spec)
                self._cache[key] = template
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        out: "Future[BaseGrammarObject]" = Future()
        template.add_done_callback(lambda done: _deliver_copy(done, out))
        return out

    def _compile(self, kind: str, spec: str) -> BaseGrammarObject:
        start = time.perf_counter()
        try:
            grammar = self.backend.compile(kind, spec)
        except Exception as exc:
            self._record(time.perf_counter() - start, ok=False)
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"{kind} grammar could not be compiled: {type(exc).__name__}: {exc}") from exc
        self._record(time.perf_counter() - start, ok=True)
        return grammar

    def _record(self, seconds: float, ok: bool) -> None:
        with self._lock:
            self._stats.record_compile(seconds, ok)

    def stats(self) -> Dict[str, Any]:
        """Counters and the compile-time histogram (per-bucket counts, not cumulative)."""
        with self._lock:
            s = self._stats
            return {
                "backend": self.backend.name,
                "compiles": s.compiles,
                "cache_hits": s.cache_hits,
                "failures": s.failures,
                "cached_grammars": len(self._cache),
                "compile_time_sum_s": s.compile_time_sum_s,
                "compile_time_buckets": dict(zip(COMPILE_TIME_BUCKETS, s.bucket_counts)),
            }

    def shutdown(self, wait: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)


def _deliver_copy(template: Future, out: Future) -> None:
    if template.cancelled():  # the manager shut down before compiling it
        out.cancel()
        return
    exc = template.exception()
    if exc is not None:
        out.set_exception(exc)
        return
    try:
        out.set_result(template.result().copy())
    except Exception as copy_exc:  # a broken copy must still resolve the caller's future
        out.set_exception(ValueError(f"grammar could not be instantiated: {copy_exc}"))
