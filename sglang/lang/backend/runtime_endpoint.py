"""RuntimeEndpoint: a frontend backend talking to our server (`sglang.launch_server`) over HTTP.

    sgl.set_default_backend(sgl.RuntimeEndpoint("http://127.0.0.1:30000"))

Prompts are sent as text rendered with the model's chat template (derived from the Jinja source
that /get_model_info reports). Everything beyond transport lives in runtime_protocol.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional, Union

import httpx

from sglang.lang.backend.runtime_protocol import (
    RuntimeBackendError,
    RuntimeProtocolBackend,
    Transport,
)

# Connecting should be quick; a generation may take as long as it takes.
_TIMEOUT = httpx.Timeout(None, connect=30.0)


def error_message(response: httpx.Response) -> str:
    """The server's own message from an error body ({"message": ...} or {"error": {...}})."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        for key in ("message", "detail"):
            if inner.get(key):
                return str(inner[key])
    return json.dumps(body)


class HttpTransport(Transport):
    def __init__(self, base_url: str, api_key: Optional[str] = None,
                 verify: Optional[Union[bool, str]] = None):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # trust_env=False: a proxy from the environment must not intercept a local server.
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=_TIMEOUT,
                                   trust_env=False, verify=True if verify is None else verify)

    def describe(self) -> str:
        return self.base_url

    # ---------------------------------------------------------------- plumbing
    def _check(self, response: httpx.Response, route: str) -> httpx.Response:
        if response.status_code >= 400:
            raise RuntimeBackendError(
                f"{route} failed with HTTP {response.status_code}: {error_message(response)}",
                response.status_code)
        return response

    def _request(self, method: str, route: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, route, **kwargs)
        except httpx.TransportError as exc:
            raise RuntimeBackendError(f"cannot reach the server at {self.base_url}{route}: {exc}") from exc
        return self._check(response, route)

    def _post(self, route: str, body: dict[str, Any]) -> Any:
        return self._request("POST", route, json=body).json()

    def _get(self, route: str) -> Any:
        return self._request("GET", route).json()

    # ---------------------------------------------------------------- Transport
    def generate(self, payload: dict[str, Any]) -> Any:
        return self._post("/generate", payload)

    def stream(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self.client.stream("POST", "/generate", json=payload) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response, "/generate")
                yield from _sse_events(response)
        except httpx.TransportError as exc:
            raise RuntimeBackendError(f"streaming from {self.base_url} failed: {exc}") from exc

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self._post("/tokenize", {"prompt": texts, "add_special_tokens": True})["tokens"]

    def special_token_id(self, token: str) -> Optional[int]:
        ids = self._post("/tokenize", {"prompt": token, "add_special_tokens": False})["tokens"]
        return ids[0] if len(ids) == 1 else None

    def model_info(self) -> dict[str, Any]:
        return self._get("/get_model_info")

    def concat_and_append(self, parent: str, children: list[str]) -> dict[str, Any]:
        return self._post("/concat_and_append", {"parent": parent, "children": children})

    def flush_cache(self) -> bool:
        return bool(self._post("/flush_cache", {}).get("success", True))

    def server_info(self) -> dict[str, Any]:
        return self._get("/get_server_info")

    def close(self) -> None:
        self.client.close()


def _sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """`data: {...}` lines until `data: [DONE]`; an error event raises with its message."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        error = event.get("error") if isinstance(event, dict) else None
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else str(error)
            code = error.get("code") if isinstance(error, dict) else None
            raise RuntimeBackendError(f"/generate stream failed: {message}",
                                      code if isinstance(code, int) else None)
        yield event


class RuntimeEndpoint(RuntimeProtocolBackend):
    """Our runtime's HTTP server as a frontend backend."""

    def __init__(self, base_url: str, api_key: Optional[str] = None,
                 chat_template_name: Optional[str] = None,
                 verify: Optional[Union[bool, str]] = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        super().__init__(HttpTransport(self.base_url, api_key, verify), chat_template_name)

    def __repr__(self) -> str:
        return f"RuntimeEndpoint({self.base_url!r})"
