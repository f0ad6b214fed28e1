"""What the scheduler processes of a tensor-parallel server share besides the model's own group.

- A gloo group for control traffic: rank 0 broadcasts each step's ops (tp_mirror.py) over it,
  host objects on every device (the model's collectives use NCCL on CUDA). Followers wait on it
  while the server idles, so its timeout is long; a rank that dies closes its sockets, which
  fails the peers' pending broadcast at once.
- Equal KV capacity: every rank sizes its pool from its own free memory; all ranks then use the
  minimum (an all-reduce MIN), so a slot index chosen by rank 0 exists on every rank.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, List

import torch
import torch.distributed as dist

from sglang.runtime.managers.tp_mirror import LeaderStopped, TPFollower

logger = logging.getLogger(__name__)

_CONTROL_TIMEOUT = timedelta(days=365)  # a follower of an idle server waits this long for a step


def new_control_group() -> Any:
    return dist.new_group(backend="gloo", timeout=_CONTROL_TIMEOUT)


def agree_on_capacity(runner: Any, group: Any) -> None:
    """Shrink this rank's KV capacity and running-request limit to the minimum over ranks."""
    from sglang.runtime.mem_cache.memory_pool import TokenSlotAllocator

    mine = torch.tensor([runner.max_total_num_tokens, runner.max_running_requests], dtype=torch.int64)
    agreed = mine.clone()
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=group)
    tokens, running = (int(x) for x in agreed)
    if tokens < runner.max_total_num_tokens:
        # The pool keeps its size; slots above the agreed capacity are never handed out.
        runner.allocator = TokenSlotAllocator(tokens, runner.device)
        runner.max_total_num_tokens = tokens
    runner.max_running_requests = running
    if (tokens, running) != tuple(mine.tolist()):
        logger.info("tensor parallel: KV capacity %d tokens, %d running requests (the minimum over ranks)",
                    tokens, running)


def broadcaster(group: Any):
    """Rank 0's `send` for TPLeader: one broadcast of the step's op list."""
    def send(ops: List[tuple]) -> None:
        dist.broadcast_object_list([ops], src=0, group=group)

    return send


def run_follower(runner: Any, group: Any) -> None:
    """A follower's whole life after startup: apply rank 0's ops until rank 0 says stop (returns)
    or is gone (the broadcast raises), or the launcher ends this process."""
    follower = TPFollower(runner)
    box: List[Any] = [None]
    try:
        while True:
            dist.broadcast_object_list(box, src=0, group=group)
            follower.apply(box[0])
    except LeaderStopped:
        logger.info("tensor-parallel follower TP%d: rank 0 shut down; exiting", runner.tp_rank)
