"""A small thread pool that runs tokenization (and other per-request CPU work) off the event loop.

The tokenizer manager serves every HTTP route on one asyncio loop; encoding a multi-megabyte
prompt or thousands of stop strings there would stall /health and every other client for seconds.
HF fast tokenizers do their work in Rust with the GIL released, so plain threads keep the loop
responsive and let several prompts tokenize at once.

Sharing one tokenizer between threads is safe as long as nobody changes its truncation or
padding settings while others encode (the only mutation transformers performs, and only when the
requested settings differ from the current ones). The server never asks for truncation or
padding, so `settle` runs one encode up front: a tokenizer.json that ships with truncation or
padding enabled gets them reset there, before any thread shares it.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

# More threads than cores buys nothing for CPU-bound encoding; a few let a huge prompt and
# ordinary ones proceed side by side.
DEFAULT_WORKERS = max(2, min(4, os.cpu_count() or 1))


class TokenizationPool:
    def __init__(self, workers: int = DEFAULT_WORKERS):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tokenize")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker thread; its exception is raised here."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        """Stop taking work; a task already running finishes in its thread, nobody waits for it."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def settle(tokenizer: Optional[Any]) -> None:
    """One encode on the calling thread before the tokenizer is shared (see the module doc)."""
    if tokenizer is not None:
        tokenizer.encode("settle", add_special_tokens=False)
