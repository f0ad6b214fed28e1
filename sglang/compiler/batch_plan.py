"""run_batch planning for compiled programs: which prefixes to prefill, and in what order to run.

Each submission's static prefix (the text it sends before its first gen/select, arguments
substituted, roles rendered) is computed from the graph without touching the backend. Sorting by
it puts submissions with common prefixes next to each other; every prefix shared by at least two
submissions is prefilled once, before the batch starts.
"""

from __future__ import annotations

import os
from typing import Any

from sglang.compiler.executor import substitute
from sglang.compiler.graph import ProgramGraph, Submit
from sglang.lang.backend.base_backend import BaseBackend, Prompt
from sglang.lang.interpreter.prefix_probe import probe_text

MIN_SHARED_CHARS = 16


def static_prefix(graph: ProgramGraph, backend: BaseBackend, args: dict[str, Any]) -> str:
    def feed(state: Any) -> None:
        for op in graph.ops:
            if not isinstance(op, Submit) or op.stream != 0:
                return
            state += substitute(op.expr, args, {})

    return probe_text(backend, feed)


def plan_batch(graph: ProgramGraph, backend: BaseBackend, arg_sets: list[dict[str, Any]]
               ) -> tuple[list[int], list[str]]:
    """(run order as indices into arg_sets, prefixes to prefill first)."""
    prefixes = [static_prefix(graph, backend, args) for args in arg_sets]
    order = sorted(range(len(arg_sets)), key=lambda i: prefixes[i])
    hints: list[str] = []
    common = os.path.commonprefix(prefixes) if prefixes else ""
    if len(common) >= MIN_SHARED_CHARS and len(prefixes) > 1:
        hints.append(common)
    # Longer prefixes shared by runs of neighbours (e.g. the same few-shot examples).
    run_start = 0
    for k in range(1, len(order) + 1):
        shared = (os.path.commonprefix([prefixes[order[run_start]], prefixes[order[k]]])
                  if k < len(order) else "")
        if len(shared) <= len(common) + MIN_SHARED_CHARS:
            group = [prefixes[order[i]] for i in range(run_start, k)]
            group_prefix = os.path.commonprefix(group)
            if len(group) > 1 and len(group_prefix) >= len(common) + MIN_SHARED_CHARS:
                hints.append(group_prefix)
            run_start = k
    return order, hints


def warm(backend: BaseBackend, hints: list[str]) -> None:
    for text in hints:
        backend.cache_prefix(Prompt(text))
