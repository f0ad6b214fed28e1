"""Jump-forward inside the scheduler: where a request's forced tokens get their KV.

`apply_jump_forward` appends the grammar's forced text (GrammarSupport.try_jump_forward: the
retokenization and rollback rules) and frees the KV of replaced tokens. Then, by default
(in-batch), the request stays in the running batch: its next decode step is a "catch-up" pass
(`launch_catch_up`), one DECODE batch in which every token still lacking KV is a row (the forced
tokens of the requests that jumped, one row for every other request), written at consecutive
positions the way a speculative verify pass writes drafts (`schedule_batch.build_rows_batch`); each request's
next token is sampled from its last row. Nobody stalls, so a jump pays off at any batch size.

With --disable-in-batch-jump-forward (the earlier path, kept for A/B), the request instead leaves
the running batch, its KV goes into the radix cache, and it re-prefills the new tokens from there
in an extra extend pass in which the other running requests make no progress.

Overlap scheduling: when the jump happens while processing batch N, batch N+1's forward pass may
already hold a row computed for the request before the jump. Each forward pass is numbered
(`sched.forward_seq`); a request records the number at its jump, and rows of passes launched
before it are dropped before sampling (`stale_row`).
"""

from __future__ import annotations

from typing import List, Optional

import torch

from sglang.runtime.host_device import to_device
from sglang.runtime.managers.launched_batch import ForwardDone
from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import OutOfKVMemory, build_rows_batch
from sglang.runtime.model_executor.forward_batch import ForwardMode


def apply_jump_forward(sched, req: Req) -> bool:
    """Append the grammar's forced text to `req` (already past its newest token). True when the
    request was moved forward (its output is streamed here); False when nothing was jumped or
    the request finished on the jumped tokens (it then finishes normally)."""
    in_batch = sched.in_batch_jump and req.mm_inputs is None  # M-RoPE requests re-prefill
    old_seqlen = req.seqlen
    budget = min(req.sampling_params.max_new_tokens - len(req.output_ids), sched.runner.context_len - req.seqlen)
    batch_size = 1 if in_batch else max(len(sched.running), 1)  # in-batch rows stall nobody
    if not sched.grammar.try_jump_forward(req, batch_size, budget):
        return False
    valid = min(req.kv_committed_len, old_seqlen - req.jump_replaced, req.seqlen - 1)
    if req.kv_committed_len > valid:
        pool = sched.runner.req_to_token_pool
        sched.runner.allocator.free(pool.read(req.req_pool_idx, valid, req.kv_committed_len))
        req.kv_committed_len = valid
    sched.output.check_finished(req)
    if req.finished_reason is not None:
        return False  # finishes normally, from its (truncated) KV
    if in_batch:
        req.jump_seq = sched.forward_seq
    else:
        requeue(sched, req)
    if sched.output.should_send(req):
        sched.outbox.append(sched.output.make_token_out(req))
    return True


def requeue(sched, req: Req) -> None:
    """Out of the running batch and back to the queue's head: its KV goes into the radix cache,
    from which it re-prefills its tokens that lack KV."""
    sched.tree_cache.cache_finished_req(req)
    req.reset_memory_state()
    if req in sched.running:
        sched.running.remove(req)
    sched.waiting.insert(0, req)


def needs_catch_up(reqs: List[Req]) -> bool:
    """Whether some request has more than its newest token without KV (it jumped forward)."""
    return any(r.kv_committed_len < r.seqlen - 1 for r in reqs)


def stale_row(forward: ForwardDone, req: Req) -> bool:
    """A row of `forward` computed for `req` before its last in-batch jump."""
    return forward.seq <= req.jump_seq


def mirror_rows(forward: ForwardDone) -> Optional[List[int]]:
    """The rows of the forward pass's own output that sampling reads (None: all of them)."""
    if forward.logit_rows is not None:
        return [forward.logit_rows[i] for i in forward.rows]
    return forward.rows if len(forward.rows) != len(forward.reqs) else None


def launch_catch_up(sched) -> Optional[ForwardDone]:
    """One decode pass over every running request's tokens that lack KV (see the module doc).
    It needs every newest token on the host, so the batch in flight is processed first (this
    step is not overlapped, as a speculative step is not)."""
    sched.drain()
    ctx = sched.runner.context_len
    reqs = [r for r in sched.running
            if r.is_live() and r.finished_reason is None and not r.finishes_with_pending(ctx)]
    if not reqs:
        return None
    token_lists = [r.all_ids[r.kv_committed_len:] for r in reqs]
    try:
        fb = build_rows_batch(reqs, token_lists, sched.res)
    except OutOfKVMemory:
        # Not enough free KV for the forced tokens now: those requests re-prefill later instead.
        for req, toks in zip(reqs, token_lists):
            if len(toks) > 1:
                requeue(sched, req)
                sched.stats["catch_up_requeued"] += 1
        return sched._launch_decode()  # no request needs a catch-up row any more
    out = sched._forward(fb)
    last, end = [], 0
    for req, toks in zip(reqs, token_lists):
        end += len(toks)
        last.append(end - 1)
        req.kv_committed_len = req.seqlen
    logits = out.next_token_logits[to_device(last, torch.int64, out.next_token_logits.device)]
    sched.stats["forward_steps"] += 1
    sched.stats["decode_steps"] += 1
    sched.stats["catch_up_steps"] += 1
    sched.ratio.step()
    return ForwardDone(ForwardMode.DECODE, reqs, logits, list(range(len(reqs))), seq=sched.forward_seq,
                       logit_rows=last)
