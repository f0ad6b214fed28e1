"""Running programs: one (`run`), many in threads (`run_batch`), and their asyncio forms."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from typing import Any, Callable, Iterator, Optional, Union

from sglang.lang.backend.base_backend import CACHE_PREFIX, BaseBackend, Prompt
from sglang.lang.interpreter.prefix_probe import shared_batch_prefix
from sglang.lang.interpreter.program_state import ProgramState
from sglang.lang.interpreter.stream_executor import StreamExecutor
from sglang.lang.ir import SglSamplingParams

Call = tuple[tuple, dict]
MAX_AUTO_THREADS = 64


def run_program(func: Callable[..., Any], backend: BaseBackend, args: tuple, kwargs: dict,
                default_params: SglSamplingParams, stream: bool = False, sync: bool = False,
                capture_errors: bool = False) -> ProgramState:
    """Run `func(s, *args, **kwargs)`. The body only enqueues work, so this returns as soon as the
    body does (unless `sync`). An exception from the body is raised, or with `capture_errors`
    recorded as the state's error (run_batch: one failing program must not stop the others)."""
    state = ProgramState(StreamExecutor(backend, default_params, stream=stream))
    try:
        state.ret_value = func(state, *args, **kwargs)
    except Exception as exc:
        state.executor.store.fail(exc)
        if not capture_errors:
            state.executor.end()
            raise
    finally:
        state.executor.end()
    if sync:
        state.sync()
    return state


def normalize_batch(batch: list[Any]) -> list[Call]:
    """Each submission is a dict of keyword arguments (upstream's form) or a tuple/list of
    positional ones."""
    if not isinstance(batch, (list, tuple)):
        raise TypeError(f"run_batch needs a list of argument dicts, got {type(batch).__name__}")
    calls = []
    for i, item in enumerate(batch):
        if isinstance(item, dict):
            calls.append(((), dict(item)))
        elif isinstance(item, (list, tuple)):
            calls.append((tuple(item), {}))
        else:
            raise TypeError(f"run_batch item {i} must be a dict of arguments (or a tuple), "
                            f"got {type(item).__name__}")
    return calls


def resolve_threads(num_threads: Union[int, str], n: int) -> int:
    if num_threads == "auto":
        return max(1, min(n, MAX_AUTO_THREADS, 8 * (os.cpu_count() or 1)))
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be 'auto' or a positive int, got {num_threads!r}")
    return num_threads


def warm_shared_prefix(func: Callable[..., Any], backend: BaseBackend, calls: list[Call]) -> None:
    """Prefill the batch's common constant prefix once before fanning out."""
    if len(calls) > 1 and backend.has(CACHE_PREFIX):
        prefix = shared_batch_prefix(func, backend, calls)
        if prefix:
            backend.cache_prefix(Prompt(prefix))


def run_program_batch(func: Callable[..., Any], backend: BaseBackend, calls: list[Call],
                      default_params: SglSamplingParams, num_threads: Union[int, str] = "auto",
                      progress_bar: bool = False, generator_style: bool = False
                      ) -> Union[list[ProgramState], Iterator[ProgramState]]:
    """States in input order; a program that raises gets its error recorded, the rest go on."""
    warm_shared_prefix(func, backend, calls)
    return run_in_threads(
        lambda i: run_program(func, backend, calls[i][0], calls[i][1], default_params, sync=True,
                              capture_errors=True),
        len(calls), num_threads, progress_bar, generator_style)


def run_in_threads(run_one: Callable[[int], ProgramState], n: int,
                   num_threads: Union[int, str] = "auto", progress_bar: bool = False,
                   generator_style: bool = False, order: Optional[list[int]] = None
                   ) -> Union[list[ProgramState], Iterator[ProgramState]]:
    """`run_one(i)` for i < n on a thread pool, submitted in `order` (default: input order);
    results come back in input order, as a list or a generator."""
    pool = concurrent.futures.ThreadPoolExecutor(resolve_threads(num_threads, n),
                                                 thread_name_prefix="sgl-batch")
    futures: list[Any] = [None] * n
    for i in order if order is not None else range(n):
        futures[i] = pool.submit(run_one, i)
    pool.shutdown(wait=False)
    states = _in_order(futures, progress_bar)
    return states if generator_style else list(states)


def _in_order(futures: list[concurrent.futures.Future], progress_bar: bool) -> Iterator[ProgramState]:
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(futures), desc="run_batch", unit="program")
        for f in futures:
            f.add_done_callback(lambda _: bar.update(1))
    try:
        for f in futures:
            yield f.result()
    finally:
        if bar is not None:
            bar.close()


async def run_program_async(func: Callable[..., Any], backend: BaseBackend, args: tuple,
                            kwargs: dict, default_params: SglSamplingParams) -> ProgramState:
    """`run` for asyncio: the body and the wait for its results run off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, lambda: run_program(func, backend, args, kwargs, default_params, sync=True))


async def run_program_batch_async(func: Callable[..., Any], backend: BaseBackend,
                                  calls: list[Call], default_params: SglSamplingParams,
                                  num_threads: Union[int, str] = "auto") -> list[ProgramState]:
    loop = asyncio.get_running_loop()
    # A pool of our own: each program holds its thread while it waits for the backend.
    with concurrent.futures.ThreadPoolExecutor(resolve_threads(num_threads, len(calls)),
                                               thread_name_prefix="sgl-async") as pool:
        await loop.run_in_executor(pool, warm_shared_prefix, func, backend, calls)
        futures = [loop.run_in_executor(pool, lambda c=call: run_program(
            func, backend, c[0], c[1], default_params, sync=True, capture_errors=True))
            for call in calls]
        return list(await asyncio.gather(*futures))
