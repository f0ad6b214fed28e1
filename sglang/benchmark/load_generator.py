"""Issue requests on a schedule: all at once (rate inf) or as a Poisson process, optionally
capped at a number in flight, and gather what each one measured.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Awaitable, Callable, List, Optional, Sequence, Tuple, TypeVar

from tqdm import tqdm

In = TypeVar("In")
Out = TypeVar("Out")


def arrival_gaps(n: int, request_rate: float, seed: int) -> List[float]:
    """Seconds to wait before each request: zeros for an infinite rate, else exponential gaps
    (a Poisson process of `request_rate` requests per second). The first request goes at once."""
    if request_rate <= 0:
        raise ValueError(f"--request-rate must be positive (or inf), got {request_rate}")
    if n <= 0 or math.isinf(request_rate):
        return [0.0] * max(n, 0)
    rng = random.Random(seed)
    return [0.0] + [rng.expovariate(request_rate) for _ in range(n - 1)]


async def run_load(inputs: Sequence[In], send: Callable[[In], Awaitable[Out]], request_rate: float,
                   max_concurrency: Optional[int], seed: int, show_progress: bool) -> Tuple[List[Out], float]:
    """Send every input on the arrival schedule; return the outputs (input order) and the duration."""
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"--max-concurrency must be >= 1, got {max_concurrency}")
    limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    bar = tqdm(total=len(inputs), disable=not show_progress)

    async def one(item: In) -> Out:
        if limit is None:
            result = await send(item)
        else:
            async with limit:  # arrivals keep their schedule; they queue here for a slot
                result = await send(item)
        bar.update(1)
        return result

    start = time.perf_counter()
    tasks = []
    for item, gap in zip(inputs, arrival_gaps(len(inputs), request_rate, seed)):
        if gap > 0:
            await asyncio.sleep(gap)
        tasks.append(asyncio.create_task(one(item)))
    outputs = await asyncio.gather(*tasks)
    duration = time.perf_counter() - start
    bar.close()
    return list(outputs), duration
