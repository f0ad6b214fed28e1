"""EngineBackend: the frontend on an in-process `sglang.Engine` (no HTTP server).

    backend = EngineBackend(model_path=DIR, device="cpu")   # owns (and shuts down) its engine
    backend = EngineBackend(engine)                         # borrows one

Same semantics as RuntimeEndpoint: payloads are /generate bodies handed to Engine.generate.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Optional

from sglang.lang.backend.runtime_protocol import (
    RuntimeBackendError,
    RuntimeProtocolBackend,
    Transport,
)

# /generate body fields → Engine.generate keyword arguments.
_ENGINE_ARGS = {"text": "prompt", "input_ids": "input_ids", "sampling_params": "sampling_params",
                "return_logprob": "return_logprob", "logprob_start_len": "logprob_start_len",
                "top_logprobs_num": "top_logprobs_num", "token_ids_logprob": "token_ids_logprob",
                "return_text_in_logprobs": "return_text_in_logprobs", "stream": "stream",
                "rid": "rid", "image_data": "image_data", "video_data": "video_data"}


class EngineTransport(Transport):
    def __init__(self, engine: Any):
        self.engine = engine
        self._tokenizer: Any = None
        # Our own tokenizer copy behind a lock: HF fast tokenizers are not safe to share across
        # threads, and the engine's copy is used on its event-loop thread.
        self._tok_lock = threading.Lock()

    def describe(self) -> str:
        return f"the in-process engine ({self.engine.server_args.model_path})"

    def _kwargs(self, payload: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(payload) - set(_ENGINE_ARGS))
        if unknown:
            raise RuntimeBackendError(f"the in-process engine does not support "
                                      f"{', '.join(unknown)}", 400)
        return {_ENGINE_ARGS[k]: v for k, v in payload.items()}

    def _call(self, payload: dict[str, Any]) -> Any:
        try:
            return self.engine.generate(**self._kwargs(payload))
        except ValueError as exc:  # invalid requests: the same message the server answers with
            raise RuntimeBackendError(str(exc), 400) from exc

    def generate(self, payload: dict[str, Any]) -> Any:
        return self._call(payload)

    def stream(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        texts: dict[int, str] = {}
        chunks = self._call(payload)
        try:
            for chunk in chunks:  # Engine streams deltas; the protocol wants cumulative text
                idx = chunk.get("index", 0)
                texts[idx] = texts.get(idx, "") + chunk.get("text", "")
                yield {**chunk, "text": texts[idx]}
        except ValueError as exc:
            raise RuntimeBackendError(str(exc), 400) from exc
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _tok(self) -> Any:
        if self._tokenizer is None:
            from sglang.runtime.utils import load_server_tokenizer

            self._tokenizer = load_server_tokenizer(self.engine.server_args)
            if self._tokenizer is None:
                raise RuntimeBackendError("the engine runs without a tokenizer (skip_tokenizer_init)")
        return self._tokenizer

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        with self._tok_lock:
            tok = self._tok()
            return [list(tok.encode(t)) for t in texts]

    def special_token_id(self, token: str) -> Optional[int]:
        with self._tok_lock:
            ids = self._tok().encode(token, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    def model_info(self) -> dict[str, Any]:
        getter = getattr(self.engine, "get_model_info", None)
        return getter() if getter is not None else self.engine.tokenizer_manager.model_info()

    def concat_and_append(self, parent: str, children: list[str]) -> dict[str, Any]:
        try:
            return self.engine.concat_and_append(parent, children)
        except ValueError as exc:
            raise RuntimeBackendError(str(exc), 400) from exc

    def flush_cache(self) -> bool:
        return bool(self.engine.flush_cache())

    def server_info(self) -> dict[str, Any]:
        return self.engine.get_server_info()


class EngineBackend(RuntimeProtocolBackend):
    """An in-process Engine as a frontend backend; shuts the engine down only if it made it."""

    def __init__(self, engine: Any = None, chat_template_name: Optional[str] = None,
                 **engine_kwargs: Any):
        if engine is not None and engine_kwargs:
            raise TypeError("give either an engine or Engine arguments, not both")
        self.owns_engine = engine is None
        if engine is None:
            from sglang.runtime.entrypoints.engine import Engine

            engine = Engine(**engine_kwargs)
        self.engine = engine
        super().__init__(EngineTransport(engine), chat_template_name)

    def shutdown(self) -> None:
        super().shutdown()
        if self.owns_engine:
            self.engine.shutdown()

    def __enter__(self) -> "EngineBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"EngineBackend({self.engine.server_args.model_path!r})"
