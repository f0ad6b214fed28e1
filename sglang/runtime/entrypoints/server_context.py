"""What every route handler needs, held on `app.state.ctx` (one per server, no module globals)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from fastapi import Request

from sglang.runtime.entrypoints.graceful_shutdown import RequestGate
from sglang.runtime.entrypoints.openai.errors import APIError
from sglang.runtime.metrics.collector import MetricsCollector
from sglang.runtime.server_args import ServerArgs

# Aliases a client may use for the one served model besides its name and path.
DEFAULT_MODEL_ALIASES = ("default",)
# Most samples per prompt and requests per call: bounds the work one HTTP call can queue.
MAX_N = 128
MAX_REQUESTS_PER_CALL = 4096


@dataclass
class ServerContext:
    server_args: ServerArgs
    tokenizer_manager: Any  # TokenizerManager (typed loosely so tests can pass a stand-in)
    metrics: Optional[MetricsCollector] = None
    chat_template: Optional[str] = None  # Jinja source; None = the tokenizer's own template
    ready: bool = False  # set after the warm-up request (or at once with --skip-server-warmup)
    gate: RequestGate = field(default_factory=RequestGate)  # in-flight count; closed on shutdown
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def model_name(self) -> str:
        return self.server_args.served_model_name

    @property
    def context_len(self) -> int:
        return self.tokenizer_manager.context_len

    def tokenizer(self) -> Any:
        tok = self.tokenizer_manager.tokenizer
        if tok is None:
            raise APIError("this server runs without a tokenizer (--skip-tokenizer-init): this route needs "
                           "text; use /generate with input_ids instead", 400)
        return tok

    def check_prompt_size(self, text: str, param: str) -> None:
        """A 400 naming the limit when `text` is too many bytes to fit the context once tokenized,
        checked before it is tokenized."""
        try:
            self.tokenizer_manager.request_tokenizer.limits.check_text(text)
        except ValueError as exc:
            raise APIError(str(exc), 400, param=param) from None

    def check_model(self, name: Optional[str]) -> Optional[str]:
        """404 for a model this server does not serve; returns the LoRA adapter that `name` selects
        ('<adapter>' or '<base>:<adapter>'), None for the base model."""
        known = {self.model_name, self.server_args.model_path, *DEFAULT_MODEL_ALIASES}
        if name is not None and name not in known:
            lora = getattr(self.tokenizer_manager, "lora", None)
            try:
                adapter = lora.for_model(name, known) if lora is not None else None
            except ValueError as exc:
                raise APIError(str(exc), 400, param="model") from None
            if adapter is not None:
                return adapter
            raise APIError(f"the model {name!r} does not exist; this server serves {self.model_name!r} "
                           f"(see /v1/models)", 404, param="model", code="model_not_found")
        return None


def get_ctx(request: Request) -> ServerContext:
    return request.app.state.ctx
