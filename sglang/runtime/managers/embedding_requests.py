"""Encode requests (embedding and reward models) on top of the generate path.

An encode request is a prefill-only generate request (max_new_tokens 0): it shares validation,
tokenization, batching, data-parallel routing and aborts with generation. The scheduler puts
the pooled vector in the request's meta ("embedding", see managers/pooling_support.py); here it
is lifted into upstream SGLang's result shape: {"embedding": [...], "meta_info": {...}} per
prompt, a list of them for a batch.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from sglang.runtime.managers.generate_input import GenerateReqInput

PromptInput = Union[str, List[str]]
IdsInput = Union[List[int], List[List[int]]]

_PREFILL_ONLY = {"max_new_tokens": 0}
# The meta field the scheduler fills with a pooling request's vector (managers/pooling_support.py).
EMBEDDING_META_KEY = "embedding"


def wrong_model_kind_message(is_generation: bool, model: str) -> str:
    """The error for a generate call on a pooling model, or an encode call on a generation model."""
    if is_generation:
        return (f"{model!r} is a generation model: it has no embeddings. Start the server with "
                f"--is-embedding (Engine(is_embedding=True)) to serve it as an embedding model")
    return (f"{model!r} is served as an embedding / reward model (--is-embedding, or a pooling "
            f"architecture): it cannot generate; use /v1/embeddings, /encode, /classify or Engine.encode")


def make_encode_input(text: Optional[PromptInput] = None, input_ids: Optional[IdsInput] = None,
                      rid: Optional[Union[str, List[str]]] = None) -> GenerateReqInput:
    """The generate request that computes these prompts' embeddings."""
    return GenerateReqInput(text=text, input_ids=input_ids, rid=rid, sampling_params=dict(_PREFILL_ONLY))


def to_embedding_result(result: Dict[str, Any]) -> Dict[str, Any]:
    """One finished prefill-only result -> {"embedding", "meta_info"}. An aborted request has no
    embedding and keeps its finish_reason (callers turn it into an error)."""
    meta = dict(result["meta_info"])
    embedding = meta.pop(EMBEDDING_META_KEY, None)
    meta.pop("completion_tokens", None)
    return {"embedding": embedding, "meta_info": meta}


def to_embedding_results(result: Any) -> Any:
    if isinstance(result, list):
        return [to_embedding_result(r) for r in result]
    return to_embedding_result(result)


async def encode_request(tokenizer_manager: Any, obj: GenerateReqInput) -> Any:
    """Run `obj` (from `make_encode_input`) and return upstream-shaped embedding results."""
    last = None
    async for out in tokenizer_manager.generate_request(obj, pooling=True):
        last = out
    return to_embedding_results(last)


def embedding_error(result: Any) -> Optional[str]:
    """A message when some result of a batch has no embedding (aborted), else None."""
    results = result if isinstance(result, list) else [result]
    for i, r in enumerate(results):
        if r.get("embedding") is None:
            reason = r["meta_info"].get("finish_reason") or {}
            return f"prompt {i}: {reason.get('message', 'no embedding was computed')}"
    return None
