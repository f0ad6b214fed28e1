"""POST /v1/embeddings: OpenAI's embeddings API on an embedding (or reward) model.

`input` is a string, a list of strings, a list of token ids, or a list of token-id lists; one
batch of prefill-only requests computes them (managers/embedding_requests.py). `encoding_format`
"base64" sends each vector as the base64 of its little-endian float32 bytes (what the openai
client decodes). `dimensions` keeps the first N values and L2-renormalizes them (Matryoshka
truncation); it is accepted only when the checkpoint's config.json declares it trained that way
(`matryoshka_dimensions`, or `is_matryoshka`), as truncating other models degrades them.
"""

from __future__ import annotations

import base64
import json
import math
import os
from typing import Any, List, Literal, Optional, Tuple

import numpy as np
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from sglang.runtime.entrypoints.json_response import json_response
from sglang.runtime.entrypoints.native_encode import check_pooling_server, run_encode
from sglang.runtime.entrypoints.openai.errors import APIError, bad_request
from sglang.runtime.entrypoints.request_body import read_model
from sglang.runtime.entrypoints.server_context import ServerContext


class EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: Any = None
    model: Optional[str] = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def split_input(value: Any) -> Tuple[Optional[Any], Optional[Any]]:
    """(text, input_ids) for the encode request, or a 400 naming what is wrong with `input`."""
    if isinstance(value, str):
        if not value:
            raise bad_request("'input' is an empty string; send at least one character", param="input")
        return value, None
    if not isinstance(value, list) or not value:
        raise bad_request("'input' must be a non-empty string, list of strings, list of token ids or list "
                          "of token-id lists", param="input")
    if all(isinstance(v, str) for v in value):
        empty = [i for i, v in enumerate(value) if not v]
        if empty:
            raise bad_request(f"'input[{empty[0]}]' is an empty string", param="input")
        return value, None
    if _is_ids(value):
        return None, value
    if all(_is_ids(v) for v in value):
        return None, value
    raise bad_request("'input' mixes types or holds empty lists; send one string, a list of strings, a list "
                      "of token ids, or a list of non-empty token-id lists", param="input")


def matryoshka_dimensions(model_path: str) -> Tuple[bool, Optional[List[int]]]:
    """(supports truncation, the allowed sizes or None for any) from the checkpoint's config.json."""
    path = os.path.join(model_path, "config.json")
    if not os.path.isfile(path):
        return False, None
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    dims = config.get("matryoshka_dimensions")
    if isinstance(dims, list) and dims:
        return True, [int(d) for d in dims]
    return bool(config.get("is_matryoshka")), None


def check_dimensions(ctx: ServerContext, dimensions: Optional[int]) -> None:
    if dimensions is None:
        return
    if dimensions < 1:
        raise bad_request(f"'dimensions' must be >= 1, got {dimensions}", param="dimensions")
    supported, allowed = matryoshka_dimensions(ctx.server_args.model_path)
    if not supported:
        raise bad_request(f"{ctx.model_name!r} does not support 'dimensions': its config.json declares no "
                          f"matryoshka_dimensions (truncating its embeddings would degrade them); leave it out",
                          param="dimensions")
    if allowed is not None and dimensions not in allowed:
        raise bad_request(f"'dimensions' must be one of {allowed} for this model, got {dimensions}",
                          param="dimensions")


def truncate(vector: List[float], dimensions: Optional[int]) -> List[float]:
    if dimensions is None:
        return vector
    if dimensions > len(vector):
        raise bad_request(f"'dimensions' is {dimensions} but the model's embeddings have {len(vector)} values",
                          param="dimensions")
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


def encode_vector(vector: List[float], encoding_format: str) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


async def handle_embeddings(ctx: ServerContext, request: Request) -> Response:
    body = await read_model(request, EmbeddingsBody)
    ctx.check_model(body.model)
    check_pooling_server(ctx, param="model")
    text, input_ids = split_input(body.input)
    check_dimensions(ctx, body.dimensions)
    results = await run_encode(ctx, request, text, input_ids)
    results = results if isinstance(results, list) else [results]
    data = [{"object": "embedding", "index": i,
             "embedding": encode_vector(truncate(r["embedding"], body.dimensions), body.encoding_format)}
            for i, r in enumerate(results)]
    tokens = sum(int(r["meta_info"].get("prompt_tokens", 0)) for r in results)
    if any(r["embedding"] is None for r in results):  # run_encode raises on aborts; a bug otherwise
        raise APIError("an embedding is missing from the results", 500)
    return json_response({"object": "list", "data": data, "model": ctx.model_name,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
