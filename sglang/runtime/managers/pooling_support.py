"""The scheduler's side of pooling models (embeddings, rewards): requests are prefill-only
(max_new_tokens 0), so they finish right after their last prompt chunk; that chunk's pass also
completes their pooled vector, which travels to the caller in the request's `extra_meta`
("embedding"), through the detokenizer like any other meta field."""

from __future__ import annotations

from typing import List, Optional

from torch import nn

from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.layers.pooler import Pooler, PoolingState, finished_vectors
from sglang.runtime.managers.embedding_requests import EMBEDDING_META_KEY
from sglang.runtime.managers.req import Req


def model_pooler(model: nn.Module) -> Optional[Pooler]:
    """The pooler of a pooling model; None for a generation model."""
    return getattr(model, "pooler", None) if getattr(model, "is_pooling_model", False) else None


def needs_all_tokens(model: nn.Module) -> bool:
    """Whether every prompt token must be computed (mean pooling): then the prefix cache, which
    would skip a cached prefix, is off."""
    pooler = model_pooler(model)
    return pooler is not None and pooler.needs_all_tokens


def record_pooled(reqs: List[Req], fb, out: LogitsProcessorOutput, pooler: Optional[Pooler]) -> None:
    """Accumulate an extend pass's pooled vectors; requests whose prompt is now complete get
    their finished embedding (one host copy for the batch)."""
    if out.pooled is None or pooler is None:
        return
    done: List[Req] = []
    for i, req in enumerate(reqs):
        if req.pooling is None:
            req.pooling = PoolingState()
        restart = fb.extend_prefix_lens_cpu[i] == 0
        req.pooling.add(out.pooled.vectors[i], fb.extend_seq_lens_cpu[i], out.pooled.additive, restart)
        if not req.is_chunked:
            done.append(req)
    for req, vector in zip(done, finished_vectors(pooler, [r.pooling for r in done])):
        req.extra_meta[EMBEDDING_META_KEY] = vector
        req.pooling = None
