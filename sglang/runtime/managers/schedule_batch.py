"""Turn a list of scheduled requests into a ForwardBatch, allocating the KV slots it writes.

This is the only place that writes req_to_token rows and advances `kv_committed_len`; the radix
cache reads them back when a request is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from sglang.runtime.host_device import host_empty, host_to_device, to_device
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
        self.pending_rows: List[int] = []  # decode rows whose input token is still on the device

    # ---------------------------------------------------------------- extend
    def build_extend(self) -> ForwardBatch:
        res = self.res
        reqs = self.reqs
        prefix_lens = [len(r.prefix_indices) for r in reqs]
        extend_lens = [len(r.fill_ids) - p for r, p in zip(reqs, prefix_lens)]
        slots = res.alloc_slots(sum(extend_lens))
        if slots is None:
            raise OutOfKVMemory(f"cannot allocate {sum(extend_lens)} KV slots for prefill")
        table = res.req_to_token_pool
        fresh_rows = []  # requests that get a req_to_token row now: their prefix is written too
        for req, p in zip(reqs, prefix_lens):
            if req.req_pool_idx is None:
                idx = table.alloc(1)
                if idx is None:
                    raise OutOfKVMemory("no free request slot (max_running_requests reached)")
                req.req_pool_idx = idx[0]
                if p:
                    fresh_rows.append(req)
        _, dev_tokens = self._extend_tokens(prefix_lens, extend_lens, slots, fresh_rows)
        num_tokens = len(slots)
        seq_lens = [len(r.fill_ids) for r in reqs]
        starts = [0]
        for n in extend_lens[:-1]:
            starts.append(starts[-1] + n)
        per_req = to_device([[r.req_pool_idx for r in reqs], seq_lens, extend_lens, prefix_lens, starts],
                            torch.int64, res.device)
        logprob_starts = [self._logprob_start(r, p, n) for r, p, n in zip(reqs, prefix_lens, extend_lens)]
        mm_inputs = [r.mm_inputs for r in reqs] if any(r.mm_inputs is not None for r in reqs) else None
        return ForwardBatch(
            forward_mode=self.mode,
            batch_size=len(reqs),
            input_ids=dev_tokens[0, :num_tokens],
            positions=dev_tokens[1, :num_tokens],
            req_pool_indices=per_req[0],
            seq_lens=per_req[1],
            out_cache_loc=dev_tokens[2, :num_tokens],
            seq_lens_cpu=seq_lens,
            req_to_token_pool=res.req_to_token_pool,
            kv_pool=res.kv_pool,
            extend_seq_lens=per_req[2],
            extend_prefix_lens=per_req[3],
            extend_start_loc=per_req[4],
            extend_seq_lens_cpu=extend_lens,
            extend_prefix_lens_cpu=prefix_lens,
            return_logprob=any(s < n for s, n in zip(logprob_starts, extend_lens)),
            extend_logprob_start_lens_cpu=logprob_starts,
            mm_inputs=mm_inputs,
            mrope_positions=self._mrope_positions(prefix_lens, extend_lens),
            lora_names=self._lora_names(),
        )

    def _lora_names(self) -> Optional[List[Optional[str]]]:
        names = [r.lora_name for r in self.reqs]
        return names if any(n is not None for n in names) else None

    def _mrope_positions(self, prefix_lens: List[int], extend_lens: List[int]) -> Optional[torch.Tensor]:
        """[3, num_tokens] M-RoPE positions when any request has them (text rows: t = h = w)."""
        if not any(r.mm_inputs is not None and r.mm_inputs.mrope_positions is not None for r in self.reqs):
            return None
        parts = []
        for req, p, n in zip(self.reqs, prefix_lens, extend_lens):
            mm = req.mm_inputs
            if mm is not None and mm.mrope_positions is not None:
                parts.append(mm.rope_positions(p, n))
            else:
                parts.append(torch.arange(p, p + n, dtype=torch.int64).expand(3, -1))
        return host_to_device(torch.cat(parts, dim=1), self.res.device)

    def _extend_tokens(self, prefix_lens: List[int], extend_lens: List[int], slots: torch.Tensor,
                       fresh_rows: List[Req]) -> Tuple[torch.Tensor, torch.Tensor]:
        """One host table [input ids; positions; KV slots; req_to_token rows] with a column per new
        token, then one per cached-prefix token of `fresh_rows` (their rows must point at the
        prefix); copied to the device at once. Writes req_to_token for every column."""
        ids: List[int] = []
        positions: List[int] = []
        rows: List[int] = []
        for req, p, n in zip(self.reqs, prefix_lens, extend_lens):
            ids.extend(req.fill_ids[p:])
            positions.extend(range(p, p + n))
            rows.extend([req.req_pool_idx] * n)
        prefix_slots = [r.prefix_indices for r in fresh_rows]
        for req in fresh_rows:
            positions.extend(range(len(req.prefix_indices)))
            rows.extend([req.req_pool_idx] * len(req.prefix_indices))
        host = host_empty((4, len(positions)), torch.int64, self.res.device)
        num_tokens = len(ids)
        host[0, :num_tokens] = torch.tensor(ids, dtype=torch.int64)
        host[0, num_tokens:] = 0
        host[1] = torch.tensor(positions, dtype=torch.int64)
        host[2] = torch.cat([slots.to(torch.int64), *prefix_slots]) if prefix_slots else slots
        host[3] = torch.tensor(rows, dtype=torch.int64)
        dev = host_to_device(host, self.res.device)
        self.res.req_to_token_pool.write_points(host[3], host[1], host[2], device_args=(dev[3], dev[1], dev[2]))
        return host, dev

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
    def build_decode(self, prev: Optional[Tuple[int, torch.Tensor]] = None) -> ForwardBatch:
        """A decode step. A request whose last token is still being sampled by the batch in
        flight (overlap scheduling: `req.pending_ref == (seq, i)`) gets input id -(i + 1), resolved
        on the device from `prev = (seq, that batch's sampled ids)`: no host read of that token."""
        res = self.res
        reqs = self.reqs
        slots = res.alloc_slots(len(reqs))
        if slots is None:
            raise OutOfKVMemory(f"cannot allocate {len(reqs)} KV slots for decode")
        last_ids = []
        self.pending_rows = []
        for i, r in enumerate(reqs):
            if r.pending_ref is None:
                last_ids.append(r.output_ids[-1])
                continue
            seq, j = r.pending_ref
            if prev is None or prev[0] != seq:
                raise RuntimeError(f"request {r.rid} waits for a token of batch {seq}, which is not in flight")
            last_ids.append(-1 - j)
            self.pending_rows.append(i)
        seq_lens = [r.kv_committed_len + 1 for r in reqs]
        # Rotary positions: the sequence index, shifted for M-RoPE requests (their t = h = w).
        shifted = any(r.rope_delta for r in reqs)
        rope_pos = [r.kv_committed_len + r.rope_delta for r in reqs] if shifted else [r.kv_committed_len for r in reqs]
        # One host tensor, one copy to the device: per-step host overhead matters at decode.
        host = host_empty((5, len(reqs)), torch.int64, res.device)
        host[:4] = torch.tensor([last_ids, rope_pos, [r.req_pool_idx for r in reqs], seq_lens], dtype=torch.int64)
        host[4] = slots
        packed = host_to_device(host, res.device)
        input_ids, positions, rows, seq_lens_t, out_loc = packed.unbind(0)
        if self.pending_rows:  # in place, so `packed` stays the whole decode input table
            torch.where(input_ids < 0, prev[1][(-1 - input_ids).clamp(min=0)], input_ids, out=input_ids)
        # The new token's column in req_to_token is its sequence index, seq_len - 1.
        columns = (host[3] - 1, seq_lens_t - 1) if shifted else (host[1], positions)
        res.req_to_token_pool.write_points(host[2], columns[0], host[4], device_args=(rows, columns[1], out_loc))
        return decode_forward_batch(packed, seq_lens, res, self._lora_names())

    def commit_decode(self) -> None:
        for req in self.reqs:
            req.kv_committed_len += 1


def build_rows_batch(reqs: Sequence[Req], token_lists: Sequence[List[int]], res: KVResources) -> ForwardBatch:
    """A DECODE batch with one row per token of `token_lists[i]`, written from request i's
    kv_committed_len on: row j of a request is its token j at position kv_committed_len + j, with
    the request's req_to_token row and seq_len kv_committed_len + j + 1. Every layer writes the KV
    of all rows before attending, so a row sees exactly the tokens up to its own. Used by the
    speculative verify pass (newest token + drafts) and the in-batch jump-forward's catch-up step
    (a request's forced tokens next to the other requests' single rows)."""
    tokens: List[int] = []
    rope: List[int] = []
    rows: List[int] = []
    seq_lens: List[int] = []
    for req, toks in zip(reqs, token_lists):
        tokens.extend(toks)
        seq_lens.extend(range(req.kv_committed_len + 1, req.kv_committed_len + len(toks) + 1))
        # rotary positions: the sequence index, shifted for M-RoPE requests (their t = h = w)
        rope.extend(range(req.kv_committed_len + req.rope_delta, req.kv_committed_len + req.rope_delta + len(toks)))
        rows.extend([req.req_pool_idx] * len(toks))
    slots = res.alloc_slots(len(tokens))
    if slots is None:
        raise OutOfKVMemory(f"cannot allocate {len(tokens)} KV slots for a multi-row decode pass")
    # Multi-LoRA: every row of a request runs under the request's adapter.
    names = [getattr(r, "lora_name", None) for r, t in zip(reqs, token_lists) for _ in t]
    # The decode input table (ids, rotary positions, rows, seq_lens, KV slots): one copy to the
    # device, and what a CUDA graph replay loads.
    host = torch.empty((5, len(tokens)), dtype=torch.int64)
    host[:4] = torch.tensor([tokens, rope, rows, seq_lens], dtype=torch.int64)
    host[4] = slots.to(torch.int64)
    packed = host_to_device(host, res.device)
    _, _, dev_rows, dev_seq_lens, out_loc = packed.unbind(0)
    # A token's column in req_to_token is its sequence index, seq_len - 1.
    res.req_to_token_pool.write_points(host[2], host[3] - 1, host[4], device_args=(dev_rows, dev_seq_lens - 1, out_loc))
    return decode_forward_batch(packed, seq_lens, res, names if any(n is not None for n in names) else None)


def decode_forward_batch(packed: torch.Tensor, seq_lens: List[int], res: "KVResources",
                         lora_names: Optional[List[Optional[str]]]) -> ForwardBatch:
    """A DECODE ForwardBatch over the device input table [ids, rotary positions, req rows,
    seq_lens, KV slots] (one row per token; also what a CUDA graph replay loads)."""
    input_ids, positions, rows, seq_lens_t, out_loc = packed.unbind(0)
    return ForwardBatch(
        forward_mode=ForwardMode.DECODE,
        batch_size=len(seq_lens),
        input_ids=input_ids,
        positions=positions,
        req_pool_indices=rows,
        seq_lens=seq_lens_t,
        out_cache_loc=out_loc,
        seq_lens_cpu=seq_lens,
        req_to_token_pool=res.req_to_token_pool,
        kv_pool=res.kv_pool,
        decode_table=packed,
        lora_names=lora_names,
    )
