"""The verify pass's KV bookkeeping: one segment per request over [newest token + drafts].

A decoding request has KV for every token but its newest (kv_committed_len == seqlen - 1). The
verify segment writes KV for the newest token and each draft at positions kv_committed_len ...,
on top of the request's own prefix (read through its req_to_token row).
After acceptance, `settle_kv` keeps the KV of the tokens that stay in the sequence and frees the
slots written for rejected drafts, so the request is back in the decode invariant (or finished
with KV for all of its kept tokens) and nothing leaks.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from sglang.runtime.host_device import host_to_device, to_device
from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import KVResources, OutOfKVMemory, build_rows_batch
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode


def build_verify_batch(reqs: Sequence[Req], drafts: Sequence[List[int]], res: KVResources) -> ForwardBatch:
    """The verify pass as a DECODE batch with one row per verified token: row j of a request is
    token j of [newest, d1 .. dk] at position kv_committed_len + j, with the request's own
    req_to_token row and seq_len kv_committed_len + j + 1. Every layer writes the KV of all rows
    before attending, so row j sees exactly the tokens up to its own: causal attention over the
    segment, as an extend pass would compute it. As a decode batch it takes the decode kernels
    and CUDA graphs. Logits come back one row per token, in batch order."""
    return build_rows_batch(reqs, [[req.output_ids[-1], *draft] for req, draft in zip(reqs, drafts)], res)


def extend_batch(pool_rows: Sequence[int], prefix_lens: Sequence[int], token_lists: Sequence[List[int]], res,
                 all_logits: bool, slots: Optional[torch.Tensor] = None) -> ForwardBatch:
    """EXTEND batch: segment i writes `token_lists[i]` at positions prefix_lens[i] ... of
    req_to_token row pool_rows[i] (fresh KV slots from `res`, or `slots` when the table already
    maps those positions to them), attending to that row's prefix.
    `all_logits`: logits for every position (`input_logits`), else only each segment's last."""
    lens = [len(t) for t in token_lists]
    given = slots is not None
    if not given:
        slots = res.alloc_slots(sum(lens))
    if slots is None:
        raise OutOfKVMemory(f"cannot allocate {sum(lens)} KV slots for a speculative pass")
    ids: List[int] = []
    positions: List[int] = []
    rows: List[int] = []
    for row, p, toks in zip(pool_rows, prefix_lens, token_lists):
        ids.extend(toks)
        positions.extend(range(p, p + len(toks)))
        rows.extend([row] * len(toks))
    host = torch.tensor([ids, positions, rows], dtype=torch.int64)
    host_slots = slots.to(torch.int64)
    dev = host_to_device(torch.cat([host, host_slots[None]]), res.device)
    if not given:
        res.req_to_token_pool.write_points(host[2], host[1], host_slots, device_args=(dev[2], dev[1], dev[3]))
    seq_lens = [p + n for p, n in zip(prefix_lens, lens)]
    starts = [0]
    for n in lens[:-1]:
        starts.append(starts[-1] + n)
    per_req = to_device([list(pool_rows), seq_lens, lens, list(prefix_lens), starts], torch.int64, res.device)
    return ForwardBatch(
        forward_mode=ForwardMode.EXTEND,
        batch_size=len(lens),
        input_ids=dev[0],
        positions=dev[1],
        req_pool_indices=per_req[0],
        seq_lens=per_req[1],
        out_cache_loc=dev[3],
        seq_lens_cpu=seq_lens,
        req_to_token_pool=res.req_to_token_pool,
        kv_pool=res.kv_pool,
        extend_seq_lens=per_req[2],
        extend_prefix_lens=per_req[3],
        extend_start_loc=per_req[4],
        extend_seq_lens_cpu=lens,
        extend_prefix_lens_cpu=list(prefix_lens),
        return_logprob=all_logits,
        extend_logprob_start_lens_cpu=[0] * len(lens) if all_logits else None,
    )


def settle_kv(req: Req, written: int, kept: int, res: KVResources) -> None:
    """The verify pass wrote `written` positions from kv_committed_len on; the first `kept` of
    them hold tokens that stay in the sequence. Free the rest, advance kv_committed_len."""
    start = req.kv_committed_len
    if not 1 <= kept <= written:
        raise ValueError(f"kept={kept} must be in [1, written={written}]")
    if kept < written:
        res.allocator.free(res.req_to_token_pool.read(req.req_pool_idx, start + kept, start + written))
    req.kv_committed_len = start + kept
