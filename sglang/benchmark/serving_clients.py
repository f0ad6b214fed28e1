"""Streaming HTTP clients for the three benchmark backends.

- `sglang`: native `/generate`; each event carries the cumulative `text` and
  `meta_info.completion_tokens`, so every chunk's token count is known exactly.
- `openai`: `/v1/completions`; events carry text deltas in `choices[0].text`.
- `openai-chat`: `/v1/chat/completions`; deltas in `choices[0].delta.content`.

The OpenAI backends ask for `stream_options.include_usage` (the final usage chunk gives the
exact output count) and `continuous_usage_stats` (per-chunk counts, where the server supports it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional, Protocol

import httpx

from sglang.benchmark.request_record import Chunk, RequestInput, RequestOutput
from sglang.benchmark.sse import iter_sse_events

BACKEND_NAMES = ("sglang", "openai", "openai-chat")


@dataclass
class EventInfo:
    """What one streamed event means for the benchmark."""

    text: str = ""  # new output text in this event
    completion_tokens: Optional[int] = None  # cumulative output tokens, when the server reports them
    carries_output: bool = False  # whether this event delivered tokens (role/usage-only events don't)


class Backend(Protocol):
    path: str

    def payload(self, req: RequestInput) -> dict: ...

    def parse_event(self, event: dict, text_so_far: str, tokens_so_far: int) -> EventInfo: ...


def _usage_tokens(event: dict) -> Optional[int]:
    usage = event.get("usage")
    return usage.get("completion_tokens") if isinstance(usage, dict) else None


class NativeBackend:
    path = "/generate"

    def payload(self, req: RequestInput) -> dict:
        key = "text" if isinstance(req.prompt, str) else "input_ids"
        params = {"temperature": 0.0, "max_new_tokens": req.output_len, "ignore_eos": req.ignore_eos}
        return {key: req.prompt, "sampling_params": params, "stream": True, **req.extra_body}

    def parse_event(self, event: dict, text_so_far: str, tokens_so_far: int) -> EventInfo:
        text = event.get("text", "")
        # Native chunks are cumulative; tolerate an incremental server rather than duplicating text.
        delta = text[len(text_so_far):] if text.startswith(text_so_far) else text
        tokens = (event.get("meta_info") or {}).get("completion_tokens")
        grew = bool(delta) or (tokens is not None and tokens > tokens_so_far)
        return EventInfo(delta, tokens, grew)


class CompletionsBackend:
    path = "/v1/completions"

    def payload(self, req: RequestInput) -> dict:
        return {"model": req.model, "prompt": req.prompt, "max_tokens": req.output_len, "temperature": 0.0,
                "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True},
                "ignore_eos": req.ignore_eos, **req.extra_body}

    def parse_event(self, event: dict, text_so_far: str, tokens_so_far: int) -> EventInfo:
        choices = event.get("choices") or []
        text = (choices[0].get("text") or "") if choices else ""
        return EventInfo(text, _usage_tokens(event), bool(text))


class ChatBackend:
    path = "/v1/chat/completions"

    def payload(self, req: RequestInput) -> dict:
        if not isinstance(req.prompt, str):
            raise TypeError("openai-chat needs text prompts; decode token-id prompts before sending")
        return {"model": req.model, "messages": [{"role": "user", "content": req.prompt}],
                "max_tokens": req.output_len, "temperature": 0.0, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True},
                "ignore_eos": req.ignore_eos, **req.extra_body}

    def parse_event(self, event: dict, text_so_far: str, tokens_so_far: int) -> EventInfo:
        choices = event.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices else {}
        text = delta.get("content") or ""
        return EventInfo(text, _usage_tokens(event), bool(text))


def get_backend(name: str) -> Backend:
    if name == "sglang":
        return NativeBackend()
    if name == "openai":
        return CompletionsBackend()
    if name == "openai-chat":
        return ChatBackend()
    raise ValueError(f"unknown backend {name!r}; use one of {', '.join(BACKEND_NAMES)}")


async def send_request(client: httpx.AsyncClient, base_url: str, backend: Backend, req: RequestInput,
                       headers: Optional[Dict[str, str]] = None) -> RequestOutput:
    """Send one streaming request and record its chunk timings; never raises."""
    out = RequestOutput(prompt_len=req.prompt_len, asked_output_len=req.output_len)
    out.start_time = time.perf_counter()
    try:
        await _stream_into(client, base_url + backend.path, backend, req, out, headers)
        out.success = True
    except Exception as e:  # a benchmark counts failures instead of stopping on the first one
        out.error = f"{type(e).__name__}: {e}"
    out.latency = time.perf_counter() - out.start_time
    return out


async def _stream_into(client: httpx.AsyncClient, url: str, backend: Backend, req: RequestInput,
                       out: RequestOutput, headers: Optional[Dict[str, str]]) -> None:
    tokens_so_far = 0
    async with client.stream("POST", url, json=backend.payload(req), headers=headers) as resp:
        if resp.status_code != 200:
            body = (await resp.aread()).decode("utf-8", "replace")
            raise RuntimeError(f"HTTP {resp.status_code} from {url}: {body[:500]}")
        async for event in iter_sse_events(resp.aiter_lines()):
            now = time.perf_counter()
            info = backend.parse_event(event, out.generated_text, tokens_so_far)
            new_tokens = None
            if info.completion_tokens is not None:
                new_tokens = info.completion_tokens - tokens_so_far
                tokens_so_far = info.completion_tokens
                out.server_output_len = info.completion_tokens
            if info.carries_output:
                out.chunks.append(Chunk(now, new_tokens))
            out.generated_text += info.text
