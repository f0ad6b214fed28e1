"""Turn a list of scheduled requests into a ForwardBatch, allocating the KV slots it writes.

This is the only place that writes req_to_token rows and advances `kv_committed_len`; the radix
cache reads them back when a request is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch

from sglang.runtime.managers.req import Req
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode


class OutOfKVMemory(RuntimeError):
    pass


@dataclass
class KVResources:
    """The memory objects a batch needs (owned by the model runner, shared with the cache)."""

    req_to_token_pool: object
    allocator: object
    kv_pool: object
    tree_cache: object
    device: str

    def alloc_slots(self, n: int) -> Optional[torch.Tensor]:
        slots = self.allocator.alloc(n)
        if slots is None:
            self.tree_cache.evict(n - self.allocator.available_size())
            slots = self.allocator.alloc(n)
        return slots


class ScheduleBatch:
    def __init__(self, reqs: List[Req], mode: ForwardMode, res: KVResources):
        self.reqs = reqs
        self.mode = mode
        self.res = res

    # ---------------------------------------------------------------- extend
    def build_extend(self) -> ForwardBatch:
        res = self.res
        reqs = self.reqs
        prefix_lens = [len(r.prefix_indices) for r in reqs]
        extend_lens = [len(r.fill_ids) - p for r, p in zip(reqs, prefix_lens)]
        slots = res.alloc_slots(sum(extend_lens))
        if slots is None:
            raise OutOfKVMemory(f"cannot allocate {sum(extend_lens)} KV slots for prefill")
        input_ids: List[int] = []
        positions: List[int] = []
        offset = 0
        table = res.req_to_token_pool
        for req, p, n in zip(reqs, prefix_lens, extend_lens):
            if req.req_pool_idx is None:
                idx = table.alloc(1)
                if idx is None:
                    raise OutOfKVMemory("no free request slot (max_running_requests reached)")
                req.req_pool_idx = idx[0]
                if p:
                    table.write(req.req_pool_idx, 0, p, req.prefix_indices)
            table.write(req.req_pool_idx, p, p + n, slots[offset : offset + n])
            input_ids.extend(req.fill_ids[p:])
            positions.extend(range(p, p + n))
            offset += n
        seq_lens = [len(r.fill_ids) for r in reqs]
        starts = [0]
        for n in extend_lens[:-1]:
            starts.append(starts[-1] + n)
        logprob_starts = [self._logprob_start(r, p, n) for r, p, n in zip(reqs, prefix_lens, extend_lens)]
        dev = res.device
        return ForwardBatch(
            forward_mode=self.mode,
            batch_size=len(reqs),
            input_ids=torch.tensor(input_ids, dtype=torch.int64, device=dev),
            positions=torch.tensor(positions, dtype=torch.int64, device=dev),
            req_pool_indices=torch.tensor([r.req_pool_idx for r in reqs], dtype=torch.int64, device=dev),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int64, device=dev),
            out_cache_loc=slots.to(dev),
            seq_lens_cpu=seq_lens,
            req_to_token_pool=res.req_to_token_pool,
            kv_pool=res.kv_pool,
            extend_seq_lens=torch.tensor(extend_lens, dtype=torch.int64, device=dev),
            extend_prefix_lens=torch.tensor(prefix_lens, dtype=torch.int64, device=dev),
            extend_start_loc=torch.tensor(starts, dtype=torch.int64, device=dev),
            extend_seq_lens_cpu=extend_lens,
            extend_prefix_lens_cpu=prefix_lens,
            return_logprob=any(s < n for s, n in zip(logprob_starts, extend_lens)),
            extend_logprob_start_lens_cpu=logprob_starts,
        )

    @staticmethod
    def _logprob_start(req: Req, prefix_len: int, extend_len: int) -> int:
        """Offset inside the extend segment from which full logits are needed (input logprobs):
        the logits at global position g score the input token at g + 1."""
        if not req.wants_input_logprobs():
            return extend_len
        first_needed = max(req.logprob_start_len - 1, 0)
        return min(max(first_needed - prefix_len, 0), extend_len)

    def commit_extend(self) -> None:
        for req in self.reqs:
            req.kv_committed_len = len(req.fill_ids)
            req.prefilled_once = True

    # ---------------------------------------------------------------- decode
    def build_decode(self) -> ForwardBatch:
        res = self.res
        reqs = self.reqs
        slots = res.alloc_slots(len(reqs))
        if slots is None:
            raise OutOfKVMemory(f"cannot allocate {len(reqs)} KV slots for decode")
        seq_lens = [r.kv_committed_len + 1 for r in reqs]
        # One host tensor, one copy to the device: per-step host overhead matters at decode.
        host = torch.tensor([[r.output_ids[-1] for r in reqs], [r.kv_committed_len for r in reqs],
                             [r.req_pool_idx for r in reqs], seq_lens], dtype=torch.int64)
        packed = torch.cat([host, slots.view(1, -1)]).to(res.device, non_blocking=True)
        input_ids, positions, rows, seq_lens_t, out_loc = packed.unbind(0)
        table = res.req_to_token_pool.req_to_token
        table[rows, positions] = out_loc.to(torch.int32)
        return ForwardBatch(
            forward_mode=ForwardMode.DECODE,
            batch_size=len(reqs),
            input_ids=input_ids,
            positions=positions,
            req_pool_indices=rows,
            seq_lens=seq_lens_t,
            out_cache_loc=out_loc,
            seq_lens_cpu=seq_lens,
            req_to_token_pool=res.req_to_token_pool,
            kv_pool=res.kv_pool,
        )

    def commit_decode(self) -> None:
        for req in self.reqs:
            req.kv_committed_len += 1
