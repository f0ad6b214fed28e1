"""Runtime: start our HTTP server in a subprocess and use it as a frontend backend.

    runtime = sgl.Runtime(model_path=DIR, device="cpu")
    sgl.set_default_backend(runtime)
    ...
    runtime.shutdown()

Keyword arguments are ServerArgs fields, passed as CLI flags to `python -m sglang.launch_server`.
The server's output goes to a log file (`runtime.log_path`); a pipe nobody reads would fill
and block the server.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, AsyncIterator, Iterator, Optional, Union

import httpx

from sglang.lang.backend.base_backend import BaseBackend, Prompt
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint, error_message
from sglang.lang.backend.runtime_protocol import RuntimeBackendError
from sglang.lang.chat_template import ChatTemplate
from sglang.lang.choices import ChoicesDecision, ChoicesSamplingMethod
from sglang.lang.ir import SglSamplingParams

DEFAULT_STARTUP_TIMEOUT_S = 600.0
_LOG_TAIL_CHARS = 4000


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_cli_args(server_args: dict[str, Any]) -> list[str]:
    """ServerArgs fields → `launch_server` flags; unknown names raise naming all of them."""
    from sglang.runtime.server_args import ServerArgs  # light: no torch

    fields = {f.name: f for f in dataclasses.fields(ServerArgs)}
    unknown = sorted(set(server_args) - set(fields))
    if unknown:
        raise TypeError(f"Runtime got unknown server argument(s) {', '.join(unknown)}; valid ones "
                        f"are the ServerArgs fields: {', '.join(sorted(fields))}")
    argv: list[str] = []
    for name, value in server_args.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
            elif fields[name].default is True:
                raise ValueError(f"{name}=False cannot be passed to the server (its flag only turns it on)")
            continue
        argv += [flag, str(value)]
    return argv


def _repo_root() -> str:
    # The directory that contains the `sglang` package, so the child imports this same copy.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class Runtime(BaseBackend):
    """A `sglang.launch_server` child process plus a RuntimeEndpoint talking to it."""

    def __init__(self, log_level: str = "error", *, host: str = "127.0.0.1",
                 port: Optional[int] = None, startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
                 chat_template_name: Optional[str] = None, **server_args: Any):
        self._closed = True  # until there is something to shut down
        if "model_path" not in server_args:
            raise TypeError("Runtime needs model_path=...")
        server_cli_args(server_args)  # unknown names fail here, before anything starts
        self.proc: Optional[subprocess.Popen] = None
        self.port = port if port is not None else _free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.api_key: Optional[str] = server_args.get("api_key")
        argv = server_cli_args({**server_args, "log_level": log_level, "host": host,
                                "port": self.port})
        self._closed = False
        fd, self.log_path = tempfile.mkstemp(prefix="sglang-runtime-", suffix=".log")
        os.close(fd)
        self._start(argv)
        atexit.register(self.shutdown)
        try:
            self._wait_healthy(startup_timeout)
        except BaseException:
            self.shutdown(keep_log=True)
            raise
        self.endpoint = RuntimeEndpoint(self.url, api_key=self.api_key,
                                        chat_template_name=chat_template_name)

    # ---------------------------------------------------------------- process
    def _start(self, argv: list[str]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_repo_root(), env.get("PYTHONPATH")]))
        with open(self.log_path, "wb") as log:
            # A new session: shutdown signals the whole group (scheduler, detokenizer too).
            self.proc = subprocess.Popen([sys.executable, "-m", "sglang.launch_server", *argv],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-chars:]
        except OSError:
            return ""

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    raise RuntimeError(f"the sglang server exited with code {code} during startup; "
                                       f"log tail ({self.log_path}):\n{self.log_tail()}")
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise RuntimeError(f"the sglang server at {self.url} was not healthy within {timeout:.0f} s; "
                           f"log tail ({self.log_path}):\n{self.log_tail()}")

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def shutdown(self, keep_log: bool = False) -> None:
        """Stop the server and its children (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.shutdown)
        endpoint = getattr(self, "endpoint", None)
        if endpoint is not None:
            endpoint.shutdown()
        if self.proc is not None:
            if self.proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            self._signal_group(signal.SIGKILL)  # stragglers of the group, if any
            if self.proc.poll() is None:
                self.proc.wait(timeout=10)
        if not keep_log:
            try:
                os.remove(self.log_path)
            except OSError:
                pass

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __del__(self) -> None:
        try:
            self.shutdown()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"Runtime({self.url!r}, pid={self.pid})"

    # ---------------------------------------------------------------- backend interface
    @property
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        return self.endpoint.capabilities

    @property
    def is_chat_model(self) -> bool:  # type: ignore[override]
        return self.endpoint.is_chat_model

    def get_chat_template(self) -> ChatTemplate:
        return self.endpoint.get_chat_template()

    def generate_stream(self, prompt: Prompt, params: SglSamplingParams
                        ) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.endpoint.generate_stream(prompt, params)

    def select(self, prompt: Prompt, choices: list[str], temperature: float,
               choices_method: ChoicesSamplingMethod) -> ChoicesDecision:
        return self.endpoint.select(prompt, choices, temperature, choices_method)

    def cache_prefix(self, prefix: Union[Prompt, str]) -> None:
        """A Prompt (backend interface) or a plain string (upstream's Runtime.cache_prefix)."""
        self.endpoint.cache_prefix(prefix)

    def precompile_constraint(self, regex: Optional[str] = None,
                              json_schema: Optional[str] = None) -> bool:
        return self.endpoint.precompile_constraint(regex=regex, json_schema=json_schema)

    def concatenate_and_append(self, parent: Prompt, children: list[Prompt]) -> dict[str, Any]:
        return self.endpoint.concatenate_and_append(parent, children)

    def flush_cache(self) -> bool:
        return self.endpoint.flush_cache()

    def get_server_info(self) -> dict[str, Any]:
        return self.endpoint.get_server_info()

    def get_model_info(self) -> dict[str, Any]:
        return self.endpoint.model_info()

    # ---------------------------------------------------------------- upstream conveniences
    def generate(self, prompt: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        """Backend call `generate(Prompt, SglSamplingParams) -> GenResult`, or upstream's
        `generate(prompt_str_or_list, sampling_params_dict, return_logprob=..., ...)`, which
        returns the server's JSON response as a string."""
        if isinstance(prompt, Prompt):
            return self.endpoint.generate(prompt, params or SglSamplingParams())
        payload = {"text": prompt, "sampling_params": params or {}, **kwargs}
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeBackendError(f"the sglang server has exited; log tail:\n{self.log_tail()}")
        return json.dumps(self.endpoint.transport.generate(payload))

    async def async_generate(self, prompt: str, sampling_params: Optional[dict[str, Any]] = None
                             ) -> AsyncIterator[str]:
        """Stream the completion of `prompt` as text pieces (upstream's Runtime.async_generate)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        payload = {"text": prompt, "sampling_params": sampling_params or {}, "stream": True}
        sent = ""
        async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(None, connect=30.0),
                                     headers=headers) as client:
            async with client.stream("POST", self.url + "/generate", json=payload) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise RuntimeBackendError(f"/generate failed with HTTP {response.status_code}: "
                                              f"{error_message(response)}", response.status_code)
                async for line in response.aiter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    event = json.loads(line[5:])
                    if "error" in event:
                        raise RuntimeBackendError(f"/generate stream failed: {event['error']}")
                    if event.get("index", 0) == 0:
                        text = event["text"]
                        yield text[len(sent):]
                        sent = text

    add_request = async_generate

    def get_tokenizer(self) -> Any:
        from sglang.runtime.utils import get_tokenizer

        info = self.get_model_info()
        return get_tokenizer(info.get("tokenizer_path") or info["model_path"])
