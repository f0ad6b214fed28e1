"""Tensor parallelism, rank 0's side and the followers' side: rank 0 schedules, followers mirror.

Rank 0 runs the whole Scheduler. Everything it does to the device state that every rank holds
a copy of is recorded, in order, as a small op and shipped to the followers right before it
matters (a forward pass or a sampling step):

- `table`: req_to_token writes (ScheduleBatch's rows, the radix cache re-pointing a request's
  prefix at the tree's slots). Followers keep an identical table, so slot indices mean the same
  KV positions on every rank (every rank's pool has the same capacity, see tp_group.py).
- `copy`: KV slot copies (`/concat_and_append`).
- `forward`: the ForwardBatch with its tensors on the host and without its pools; a follower
  moves the tensors to its device and attaches its own pools and attention backend.
- `sample`: the rows sampled and the SamplingBatchInfo on the host (seeds, temperatures,
  penalties, grammar masks); followers sample the same logits (identical on every rank, the
  model all-gathers them) with the same counter-based seeds, so they draw the same tokens.
- `clear_encoder_cache`: a cache flush (vision-language models keep per-rank encoder caches).
- `stop`: rank 0 is shutting down on purpose (SIGTERM from its launcher); followers exit 0, so
  the other nodes of a multi-node launch end cleanly too.

Followers never see requests, ZMQ or the radix tree; they replay these ops in order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from typing import Any, Callable, Deque, List, Optional

import torch

from sglang.runtime.model_executor.forward_batch import ForwardBatch

logger = logging.getLogger(__name__)

Op = tuple
# The five decode inputs that are row views of ForwardBatch.decode_table (see ForwardBatch).
_DECODE_TABLE_FIELDS = ("input_ids", "positions", "req_pool_indices", "seq_lens", "out_cache_loc")
_NOT_SHIPPED = ("req_to_token_pool", "kv_pool", "attn_backend", "attn_metadata")


def _host(value: Any) -> Any:
    return value.cpu() if isinstance(value, torch.Tensor) else value


def _on(device: str, value: Any) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def forward_batch_to_host(fb: ForwardBatch) -> dict:
    """The batch's fields with tensors on the host (a device read on CUDA); pools and backend
    state stay behind, each rank has its own."""
    fields = {}
    for f in dataclasses.fields(fb):
        if f.name in _NOT_SHIPPED:
            continue
        if fb.decode_table is not None and f.name in _DECODE_TABLE_FIELDS:
            continue  # rebuilt as views of the table
        fields[f.name] = _host(getattr(fb, f.name))
    return fields


def forward_batch_from_host(fields: dict, runner: Any) -> ForwardBatch:
    """Rebuild a ForwardBatch shipped by `forward_batch_to_host` against this rank's pools."""
    device = runner.device
    values = {name: _on(device, value) for name, value in fields.items()}
    table = values.get("decode_table")
    if table is not None:
        values.update(zip(_DECODE_TABLE_FIELDS, table.unbind(0)))
    return ForwardBatch(req_to_token_pool=runner.req_to_token_pool, kv_pool=runner.kv_pool, **values)


@dataclasses.dataclass
class _ShippedTensor:
    """A tensor on its way to a follower, with where rank 0 kept it (an all-greedy batch keeps
    its per-row tensors on the host; the sampler's path depends on it)."""

    host: torch.Tensor
    on_device: bool


def sampling_info_to_host(info: Any) -> Any:
    return _map_tensors(info, lambda t: _ShippedTensor(t.cpu(), t.device.type != "cpu"))


def sampling_info_on(device: torch.device, info: Any) -> Any:
    def place(value: Any) -> Any:
        if isinstance(value, _ShippedTensor):
            return value.host.to(device) if value.on_device else value.host
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.replace(value, **{f.name: place(getattr(value, f.name))
                                                 for f in dataclasses.fields(value) if f.init})
        return value

    return place(info)


def _map_tensors(obj: Any, fn: Callable[[Any], Any]) -> Any:
    """A copy of a (nested) dataclass with `fn` applied to its tensor fields."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _map_tensors(getattr(obj, f.name), fn)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


class TPLeader:
    """Rank 0's recorder: hooks the runner's req_to_token and KV pools so their writes are
    recorded, and sends the ops through `send` (a broadcast to the followers) at each forward
    pass and sampling step."""

    def __init__(self, runner: Any, send: Callable[[List[Op]], None]):
        self.runner = runner
        self._send = send
        self._ops: List[Op] = []
        self._hook_pools()

    def _hook_pools(self) -> None:
        # Instance attributes shadow the methods: every writer (ScheduleBatch, the radix cache,
        # kv_concat) goes through them without knowing about tensor parallelism.
        table, kv = self.runner.req_to_token_pool, self.runner.kv_pool
        write, write_points, copy_slots = table.write, table.write_points, kv.copy_slots

        def recorded_write(req_idx: int, start: int, end: int, slots: torch.Tensor) -> None:
            self._ops.append(("table", torch.full((end - start,), req_idx, dtype=torch.int64),
                              torch.arange(start, end, dtype=torch.int64), _host(slots).to(torch.int64)))
            write(req_idx, start, end, slots)

        def recorded_write_points(rows, positions, slots, device_args=None) -> None:
            self._ops.append(("table", rows.clone(), positions.clone(), slots.clone()))
            write_points(rows, positions, slots, device_args=device_args)

        def recorded_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
            self._ops.append(("copy", _host(dst), _host(src)))
            copy_slots(dst, src)

        table.write, table.write_points, kv.copy_slots = recorded_write, recorded_write_points, recorded_copy

    def forward(self, fb: ForwardBatch):
        self._ops.append(("forward", forward_batch_to_host(fb)))
        self.flush()
        return self.runner.forward(fb)

    def sample(self, rows: Optional[List[int]], info: Any) -> None:
        """Before rank 0 samples a forward pass's logits: `rows` selects them (None: all),
        `info` None when nothing is sampled (the follower then just drops that forward pass)."""
        self._ops.append(("sample", rows, None if info is None else sampling_info_to_host(info)))
        self.flush()

    def clear_encoder_cache(self) -> None:
        self._ops.append(("clear_encoder_cache",))
        self.flush()

    def flush(self) -> None:
        if self._ops:
            ops, self._ops = self._ops, []
            self._send(ops)

    def stop_followers(self) -> None:
        """Rank 0 is shutting down on purpose: followers leave with exit code 0."""
        self._ops.append(("stop",))
        self.flush()


class LeaderStopped(Exception):
    """Raised in a follower by rank 0's `stop` op: a clean shutdown, not a failure."""


class TPFollower:
    """A follower rank: replays rank 0's ops on its own ModelRunner."""

    def __init__(self, runner: Any):
        self.runner = runner
        self._unsampled: Deque[Any] = deque()  # forward outputs awaiting their sampling op
        self.last_ids: Optional[torch.Tensor] = None  # tokens of the last sampling (tests compare)
        self.num_forwards = 0

    def apply(self, ops: List[Op]) -> None:
        for op in ops:
            getattr(self, "_op_" + op[0])(*op[1:])

    def _op_table(self, rows: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor) -> None:
        self.runner.req_to_token_pool.write_points(rows, positions, slots)

    def _op_copy(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        device = self.runner.kv_pool.device
        self.runner.kv_pool.copy_slots(dst.to(device), src.to(device))

    def _op_forward(self, fields: dict) -> None:
        fb = forward_batch_from_host(fields, self.runner)
        self._unsampled.append(self.runner.forward(fb))
        self.num_forwards += 1

    def _op_sample(self, rows: Optional[List[int]], info: Any) -> None:
        out = self._unsampled.popleft()
        if info is None:
            return
        logits = out.next_token_logits
        if rows is not None:
            logits = logits[torch.tensor(rows, dtype=torch.int64, device=logits.device)]
        self.last_ids = self.runner.sample(logits, sampling_info_on(logits.device, info))

    def _op_stop(self) -> None:
        raise LeaderStopped()

    def _op_clear_encoder_cache(self) -> None:
        cache = getattr(self.runner.model, "encoder_cache", None)
        if cache is not None:
            cache.clear()
