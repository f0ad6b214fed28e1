"""Speculative decoding: draft several tokens per request, verify them in one forward pass.

`create_spec_worker` maps --speculative-algorithm to its worker (imported lazily); the scheduler
calls the worker's `run` in place of a decode step (docs/speculative_decoding.md).
"""

from __future__ import annotations

import importlib
from typing import Optional

# algorithm -> (module, class)
_WORKERS = {
    "NGRAM": ("sglang.runtime.speculative.spec_worker", "NgramSpecWorker"),
    "DRAFT": ("sglang.runtime.speculative.draft_worker", "DraftModelSpecWorker"),
    "EAGLE": ("sglang.runtime.speculative.eagle_worker", "EagleSpecWorker"),
}


def create_spec_worker(server_args, runner) -> Optional[object]:
    algo = server_args.speculative_algorithm
    if algo is None:
        return None
    if algo not in _WORKERS:
        raise ValueError(f"--speculative-algorithm {algo} is not implemented yet; use one of {sorted(_WORKERS)}")
    module, name = _WORKERS[algo]
    worker_cls = getattr(importlib.import_module(module), name)
    return worker_cls(server_args, runner.vocab_size(), runner.context_len, runner)
