"""Server lifecycle: start the runtime, serve HTTP, warm up, and shut everything down cleanly.

Order: check cheap options (chat template) -> start scheduler and detokenizer -> uvicorn binds
and logs "listening on ..." -> one warm-up request through the real HTTP path -> /health turns
200. SIGTERM/SIGINT: new requests get 503 while those in flight drain for up to
--graceful-shutdown-timeout, the rest end with an error (graceful_shutdown.py); then uvicorn
stops, the tokenizer manager closes on its loop, the child processes are stopped, the ipc
directory is removed, and the process exits 0. If a child process dies, or the scheduler hangs
(--watchdog-timeout), the server logs why and exits 1.

uvicorn re-raises the signal it handled once it has stopped; our own handler (installed before
uvicorn, so uvicorn restores it) turns that into ShutdownRequested, which unwinds to `serve`'s
cleanup instead of killing the process before its children are stopped. A signal during startup
takes the same way out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import List, Optional

import httpx
import uvicorn

from sglang.runtime.entrypoints.graceful_shutdown import drain
from sglang.runtime.entrypoints.http_server import create_app
from sglang.runtime.entrypoints.launch import RuntimeProcesses, launch_runtime
from sglang.runtime.entrypoints.openai.chat_templates import resolve_chat_template, server_chat_template
from sglang.runtime.entrypoints.server_context import ServerContext
from sglang.runtime.metrics.collector import MetricsCollector
from sglang.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)

WARMUP_TIMEOUT_S = 600.0
CHILD_CHECK_PERIOD_S = 0.5
# uvicorn's own grace after the drain: only connections that stopped reading are still open then.
UVICORN_GRACE_S = 5
KEEP_ALIVE_S = 5
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownRequested(BaseException):
    """Raised by our signal handler; a BaseException so no `except Exception` swallows it."""


def _on_signal(signum: int, frame) -> None:
    raise ShutdownRequested(signal.Signals(signum).name)


def serve(server_args: ServerArgs) -> int:
    """Run the server until a signal or a fatal error; returns the process exit code."""
    if server_args.node_rank > 0:  # a multi-node launch's other nodes run ranks, not HTTP
        from sglang.runtime.entrypoints.worker_node import run_worker_node

        return run_worker_node(server_args)
    # Fail in milliseconds, not after the model has loaded.
    resolve_chat_template(server_args.chat_template)
    check_port_free(server_args.host, server_args.port)
    previous = {sig: signal.signal(sig, _on_signal) for sig in _SIGNALS}
    runtime: Optional[RuntimeProcesses] = None
    server: Optional[SGLangServer] = None
    try:
        tokenizer_manager, runtime = launch_runtime(server_args)
        ctx = build_context(server_args, tokenizer_manager)
        server = SGLangServer(uvicorn_config(ctx), ctx)
        server.run()
    except ShutdownRequested as sig:
        logger.info("received %s; shut down", sig)
    finally:
        for sig in _SIGNALS:  # a second signal must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        if runtime is not None:  # (launch_runtime cleans up after itself when it fails)
            runtime.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("server stopped")
    return server.exit_code if server is not None else 0  # 1 after a child's death or a hang, signal or not


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port "
                               f"or stop the process using it") from None


def build_context(server_args: ServerArgs, tokenizer_manager) -> ServerContext:
    metrics = MetricsCollector(server_args.served_model_name) if server_args.enable_metrics else None
    if metrics is not None:
        tokenizer_manager.listeners.append(metrics)
    template = server_chat_template(server_args.chat_template, tokenizer_manager.tokenizer)
    return ServerContext(server_args, tokenizer_manager, metrics, template, ready=server_args.skip_server_warmup)


def uvicorn_config(ctx: ServerContext) -> uvicorn.Config:
    args = ctx.server_args
    return uvicorn.Config(
        create_app(ctx), host=args.host, port=args.port, log_level=args.log_level, loop="asyncio", http="h11",
        access_log=args.log_requests or args.log_level == "debug", timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=UVICORN_GRACE_S,
    )


def client_base_url(host: str, port: int) -> str:
    """URL this machine reaches the server at (wildcard binds are reached via loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class SGLangServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ctx: ServerContext):
        super().__init__(config)
        self.ctx = ctx
        self.exit_code = 0
        self._tasks: List[asyncio.Task] = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._drain: Optional[asyncio.Task] = None
        self._second_signal: Optional[asyncio.Event] = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.started or self.should_exit:
            return
        args = self.ctx.server_args
        logger.info("listening on http://%s:%d", args.host, args.port)
        self._loop = asyncio.get_running_loop()
        self._second_signal = asyncio.Event()
        self._tasks = [self._loop.create_task(self._warm_up()), self._loop.create_task(self.watch_children())]

    def handle_exit(self, sig: int, frame) -> None:
        """uvicorn's signal handler. Once serving, the first SIGTERM/SIGINT starts the drain
        (graceful_shutdown.py) and a second one cuts it short; before that, uvicorn's default."""
        if self._loop is None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)  # re-raised by uvicorn once stopped: see `serve`
        # A signal handler may run in the middle of the loop's own code: hand over thread-safely.
        if self._drain is None:
            self._loop.call_soon_threadsafe(self._start_drain, signal.Signals(sig).name)
        else:
            self._loop.call_soon_threadsafe(self._second_signal.set)

    def _start_drain(self, signal_name: str) -> None:
        if self._drain is None:
            self._drain = self._loop.create_task(self._drain_then_exit(signal_name))

    async def _drain_then_exit(self, signal_name: str) -> None:
        try:
            await drain(self.ctx.gate, self.ctx.tokenizer_manager, self.ctx.server_args.graceful_shutdown_timeout,
                        signal_name, self._second_signal)
        finally:
            self.should_exit = True

    async def watch_children(self) -> None:
        """A dead scheduler or detokenizer, or a hung scheduler, takes the server down (exit code
        1) instead of leaving it up to answer every request with an error."""
        tm = self.ctx.tokenizer_manager
        while not self.should_exit:
            dead = [(name, proc) for name, proc in tm.procs if not proc.is_alive()]
            if dead:
                name, proc = dead[0]
                logger.error("the %s process (pid %s) exited with code %s; shutting the server down",
                             name, proc.pid, proc.exitcode)
                self.exit_code = 1
                self.should_exit = True
                return
            hung = getattr(tm, "dead_error", None)
            if hung is not None and self._drain is None:  # (while draining, requests are failed on purpose)
                logger.error("shutting the server down: %s", hung)
                self.exit_code = 1
                self.should_exit = True
                return
            await asyncio.sleep(CHILD_CHECK_PERIOD_S)

    async def _warm_up(self) -> None:
        args = self.ctx.server_args
        if args.skip_server_warmup:
            return
        generates = getattr(self.ctx.tokenizer_manager, "is_generation", True)
        route = "/generate" if generates else "/encode"  # embedding / reward models only encode
        payload = {"sampling_params": {"temperature": 0, "max_new_tokens": 4}} if generates else {}
        payload.update({"input_ids": [0, 1, 2]} if args.skip_tokenizer_init else {"text": "The capital of France is"})
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        try:
            async with httpx.AsyncClient(timeout=WARMUP_TIMEOUT_S, trust_env=False) as client:
                reply = await client.post(client_base_url(args.host, args.port) + route, json=payload,
                                          headers=headers)
            if reply.status_code != 200:
                raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:500]}")
        except Exception as exc:
            if self._drain is not None:  # a signal arrived during the warm-up: not a failure
                return
            logger.error("the warm-up request failed (%s); shutting down. See the log above; "
                         "--skip-server-warmup skips this check", exc)
            self.exit_code = 1
            self.should_exit = True
            return
        self.ctx.ready = True
        logger.info("warm-up done; the server is ready")
