"""The FastAPI application: native routes, OpenAI routes, errors, API key, lifespan.

`create_app(ctx)` builds the app around one ServerContext (everything per server lives there);
`launch_server(server_args)` starts the runtime and serves it (see server_lifecycle.py).
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

from fastapi import FastAPI

import sglang
from sglang.runtime.entrypoints.auth import ApiKeyMiddleware
from sglang.runtime.entrypoints.graceful_shutdown import RequestGateMiddleware
from sglang.runtime.entrypoints.native_api import router as native_router
from sglang.runtime.entrypoints.lora_api import router as lora_router
from sglang.runtime.entrypoints.native_encode import router as native_encode_router
from sglang.runtime.entrypoints.openai.errors import register_error_handlers
from sglang.runtime.entrypoints.openai.router import router as openai_router
from sglang.runtime.entrypoints.server_context import ServerContext


def create_app(ctx: ServerContext) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # The tokenizer manager's sockets and tasks live on this loop: close them while it runs.
        ctx.tokenizer_manager.close()

    app = FastAPI(title="SGLang", version=sglang.__version__, lifespan=lifespan)
    app.state.ctx = ctx
    register_error_handlers(app)
    app.include_router(native_router)
    app.include_router(native_encode_router)
    app.include_router(lora_router)
    app.include_router(openai_router)
    if ctx.server_args.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=ctx.server_args.api_key)
    app.add_middleware(RequestGateMiddleware, gate=ctx.gate)  # outermost: counts and refuses everything
    return app


def launch_server(server_args) -> int:
    """Start the runtime and serve HTTP until SIGTERM/SIGINT; returns the process exit code."""
    from sglang.runtime.entrypoints.server_lifecycle import serve

    return serve(server_args)
