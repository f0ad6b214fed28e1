"""The scheduler process: continuous batching over one model runner.

Loop: receive messages -> admit into the waiting queue -> pick the next batch (prefill has
priority, filled under budgets by PrefillAdder; otherwise one decode step of the running batch)
-> launch it -> record tokens, finish requests -> send TokenOuts to the detokenizer.

Overlap scheduling (default; `--disable-overlap-schedule` turns it off): each step launches batch
N+1 (forward + sampling queued on the device) and only then reads and processes the results of
batch N, so the host's bookkeeping runs while the device computes. A request finished by batch N
may already be in batch N+1: that token is dropped, and the KV slot it wrote belongs to the
finished sequence (cached with it). A batch with grammar-constrained requests launches its
forward pass at once but its sampling only after batch N's tokens are accepted by the grammars
(the masks depend on them), so the masks are built while the device runs the forward pass; the
forward pass of the batch after it is then queued at once, before the host turns to I/O.
Without overlap every batch is processed right after its launch; both modes share all code
(see docs/architecture.md).

The work is split into small collaborators: SchedulePolicy (queue order), PrefillAdder (budgets),
ScheduleBatch (forward-batch building), memory_guard (retraction), OutputProcessor (finish checks,
logprobs, outputs) and RequestIntake (validation of incoming requests).
"""

from __future__ import annotations

import logging
import time
from typing import List, Optional

import torch

from sglang.runtime.host_device import HostCopies, to_device
from sglang.runtime.lora.scheduling import handle_lora_control, make_admission
from sglang.runtime.managers.grammar_support import GrammarSupport
from sglang.runtime.managers.kv_concat import concat_and_append
from sglang.runtime.managers.launched_batch import ForwardDone, LaunchedBatch
from sglang.runtime.managers.jump_forward_step import (apply_jump_forward, launch_catch_up, mirror_rows, needs_catch_up,
                                                        stale_row)
from sglang.runtime.managers.io_struct import (
    AbortReq,
    BatchTokenOut,
    ConcatAppendReq,
    FlushCacheReply,
    FlushCacheReq,
    LoadLoraReq,
    ServerStateReply,
    ServerStateReq,
    TokenizedGenerateReq,
    UnloadLoraReq,
    finish_abort,
    finish_length,
    finish_matched_token,
)
from sglang.runtime.managers.memory_guard import NewTokenRatio, retract_for_decode
from sglang.runtime.managers.output_processor import OutputProcessor
from sglang.runtime.managers.pooling_support import model_pooler, needs_all_tokens, record_pooled
from sglang.runtime.managers.prefill_adder import AddResult, PrefillAdder
from sglang.runtime.managers.req import Req
from sglang.runtime.managers.request_intake import RequestIntake
from sglang.runtime.managers.schedule_batch import KVResources, ScheduleBatch
from sglang.runtime.managers.schedule_policy import SchedulePolicy
from sglang.runtime.managers.scheduler_report import kv_leak, scheduler_state
from sglang.runtime.managers.tp_mirror import TPLeader
from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.sampling.penalties import PendingTokens
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo
from sglang.runtime.server_args import ServerArgs
from sglang.runtime.speculative import create_spec_worker

logger = logging.getLogger(__name__)


def make_prefix_cache(runner: ModelRunner, disable: bool):
    if disable:
        from sglang.runtime.mem_cache.chunk_cache import ChunkCache

        return ChunkCache(runner.req_to_token_pool, runner.allocator)
    from sglang.runtime.mem_cache.radix_cache import RadixCache

    return RadixCache(runner.req_to_token_pool, runner.allocator)


class Scheduler:
    """Scheduling state and policy; transport-free (see scheduler_process.py for the ZMQ loop)."""

    def __init__(self, server_args: ServerArgs, tokenizer=None, runner: Optional[ModelRunner] = None,
                 mirror: Optional[TPLeader] = None):
        self.server_args = server_args
        self.runner = runner or ModelRunner(server_args)
        # Tensor parallelism: rank 0's recorder, which ships every step to the follower ranks.
        self.mirror = mirror
        self.pooler = model_pooler(self.runner.model)  # embedding / reward models; None when generating
        self.tree_cache = make_prefix_cache(self.runner, server_args.disable_radix_cache
                                            or needs_all_tokens(self.runner.model))
        self.res = KVResources(self.runner.req_to_token_pool, self.runner.allocator, self.runner.kv_pool,
                               self.tree_cache, self.runner.device)
        self.policy = SchedulePolicy(server_args.schedule_policy, self.tree_cache, server_args.random_seed)
        self.output = OutputProcessor(tokenizer, self.runner.context_len, server_args.stream_interval)
        self.intake = RequestIntake(server_args, self.runner, tokenizer)
        self.ratio = NewTokenRatio(server_args.schedule_conservativeness)
        self.grammar = GrammarSupport(server_args, tokenizer, self.runner.vocab_size(), self.runner.eos_token_ids())
        self.waiting: List[Req] = []
        self.running: List[Req] = []
        self.chunked_req: Optional[Req] = None
        self.last_batch_chunked = False
        self.outbox = []
        self.overlap = not server_args.disable_overlap_schedule
        self.inflight: Optional[LaunchedBatch] = None  # launched, results not yet processed
        self.next_forward: Optional[ForwardDone] = None  # a grammar batch's forward, not yet sampled
        self.launch_seq = 0
        self.forward_seq = 0  # forward passes launched (in-batch jump-forward drops stale rows)
        self.in_batch_jump = not server_args.disable_in_batch_jump_forward
        # Speculative decoding (runtime/speculative/): replaces decode steps of small batches.
        self.spec = create_spec_worker(server_args, self.runner)
        self.stats = {"num_retractions": 0, "forward_steps": 0, "decode_steps": 0, "prefill_steps": 0, "prefill_tokens": 0,
                      "catch_up_steps": 0, "catch_up_requeued": 0}

    # ---------------------------------------------------------------- messages
    def handle(self, msg) -> Optional[object]:
        """Process one incoming message; returns an immediate reply for control messages."""
        if isinstance(msg, TokenizedGenerateReq):
            self._admit(msg)
        elif isinstance(msg, AbortReq):
            self.abort(msg.rid, msg.message)
        elif isinstance(msg, FlushCacheReq):
            return self.flush_cache()
        elif isinstance(msg, ServerStateReq):
            return ServerStateReply(self.state())
        elif isinstance(msg, ConcatAppendReq):
            # Between steps, with the batch in flight processed: nothing is pending on the KV.
            self.drain()
            return concat_and_append(self.tree_cache, self.runner.allocator, self.runner.kv_pool,
                                     msg.parent_ids, msg.children_ids)
        elif isinstance(msg, (LoadLoraReq, UnloadLoraReq)):
            return handle_lora_control(self, msg)
        else:
            logger.error("scheduler got an unknown message %r", type(msg).__name__)
        return None

    def _admit(self, msg: TokenizedGenerateReq) -> None:
        req = self.intake.make_req(msg, self._queued_count())
        if self.spec is not None:
            self.spec.on_admit(req)
        if req.finished_reason is None and self.grammar.attach(req):
            return  # waits in the grammar queue while its grammar compiles
        if req.finished_reason is not None:
            self.outbox.append(self.output.make_token_out(req))
        else:
            self.waiting.append(req)

    def _queued_count(self) -> int:
        """Requests waiting beyond the free running slots (what --max-queued-requests bounds).
        Waiting requests that fill free slots join the running batch at the next step, so they are
        not queued: 12 requests arriving together with 2 slots and a queue of 3 admit 5."""
        held = len(self.running) + (1 if self.chunked_req is not None else 0)
        free_slots = max(self.runner.max_running_requests - held, 0)
        return max(len(self.waiting) + len(self.grammar.pending) - free_slots, 0)

    def abort(self, rid: str, message: str) -> None:
        for req in self.waiting + self.grammar.pending:
            if rid == "" or req.rid == rid:
                req.to_abort = message
        for req in self.running + ([self.chunked_req] if self.chunked_req else []):
            if rid == "" or req.rid == rid:
                req.to_abort = message
        self._drop_aborted_waiting()

    def _drop_aborted_waiting(self) -> None:
        keep = []
        for req in self.waiting:
            if req.to_abort is None:
                keep.append(req)
                continue
            req.finished_reason = finish_abort(req.to_abort)
            if req.req_pool_idx is not None:  # retracted requests hold no memory; others neither
                self.tree_cache.cache_finished_req(req)
            self.outbox.append(self.output.make_token_out(req))
        self.waiting = keep

    def flush_cache(self) -> FlushCacheReply:
        self.drain()
        if self.running or self.waiting or self.chunked_req:
            return FlushCacheReply(False, "cannot flush the cache while requests are in flight")
        self.tree_cache.reset()
        encoder_cache = getattr(self.runner.model, "encoder_cache", None)  # vision-language models
        if encoder_cache is not None:
            encoder_cache.clear()
            if self.mirror is not None:
                self.mirror.clear_encoder_cache()
        return FlushCacheReply(True, "cache flushed")

    def state(self) -> dict:
        return scheduler_state(self)

    # ---------------------------------------------------------------- stepping
    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.chunked_req or self.grammar.pending
                    or self.inflight is not None or self.next_forward is not None)

    def live_reqs(self) -> List[Req]:
        """Requests that may hold KV: running, the chunked one, and unfinished ones of the batch
        in flight or of the forward pass awaiting its sampling (e.g. a max_new_tokens=0 prefill
        awaiting its finish)."""
        reqs = list(self.running) + ([self.chunked_req] if self.chunked_req is not None else [])
        known = {id(r) for r in reqs}
        for batch in (self.inflight, self.next_forward):
            if batch is not None:
                reqs += [r for r in batch.live_reqs() if id(r) not in known]
        return reqs

    def step(self) -> List:
        """Launch at most one forward pass and process the previous one; returns the messages to send."""
        ready, failed = self.grammar.poll()
        self.waiting.extend(ready)
        self.outbox.extend(self.output.make_token_out(r) for r in failed)
        self._drop_aborted_waiting()
        forward, self.next_forward = self.next_forward, None
        if forward is None:
            forward = self._launch_next()
        launched = None
        deferred = forward is not None and self.overlap and forward.has_grammar()
        if forward is not None and not deferred:
            launched = self._launch_sampling(forward)
        self.drain()  # batch N's results, while the device runs batch N+1
        if deferred:
            # Grammar masks need batch N's tokens: sample batch N+1 now that they are accepted
            # (its forward pass ran on the device meanwhile).
            launched = self._launch_sampling(self._after_drain(forward))
        if launched is not None:
            if launched.needs_sync:
                self._process(launched)
            else:
                self.inflight = launched
        if deferred:
            # Queue batch N+2's forward pass before the host's I/O: its sampling came late, so the
            # device would otherwise idle until the next step.
            self.next_forward = self._launch_next()
        if forward is None and not self.running and self.grammar.pending:
            time.sleep(0.001)  # only compiling grammars: do not spin
        out, self.outbox = self.outbox, []
        if out:
            return [BatchTokenOut(out)]
        return []

    def drain(self) -> None:
        """Process the batch in flight, if any, and a forward pass queued ahead of its sampling."""
        if self.inflight is not None:
            batch, self.inflight = self.inflight, None
            self._process(batch)
        if self.next_forward is not None:
            forward, self.next_forward = self.next_forward, None
            self._process(self._launch_sampling(self._after_drain(forward)))

    @staticmethod
    def _after_drain(forward: ForwardDone) -> ForwardDone:
        """The forward pass as seen once batch N is processed: its tokens are in output_ids (no
        longer pending), and rows of requests that batch N finished or jumped forward are
        dropped (they left the running batch, or their row predates the forced tokens; a token
        sampled for them would be discarded)."""
        forward.pending = None
        forward.rows = [i for i in forward.rows
                        if forward.reqs[i].is_live() and not stale_row(forward, forward.reqs[i])]
        return forward

    def _launch_next(self) -> Optional[ForwardDone]:
        batch = None
        if not (self.last_batch_chunked and self.running):
            batch = self._next_prefill_batch()
        if batch is not None:
            return self._launch_extend(batch)
        if self.running:
            return self._launch_decode()
        return None

    def _next_prefill_batch(self) -> Optional[ScheduleBatch]:
        self.last_batch_chunked = False
        if not self.waiting and self.chunked_req is None:
            return None
        adder = PrefillAdder(self.tree_cache, self.runner.allocator, self.runner.req_to_token_pool,
                             self.running, self.ratio.value, self.server_args.max_prefill_tokens,
                             self.server_args.chunked_prefill_size, self.runner.max_running_requests)
        if self.chunked_req is not None:
            req, self.chunked_req = self.chunked_req, None
            if req.to_abort is not None:
                req.finished_reason = finish_abort(req.to_abort)
                self._after_token(req)
            else:
                adder.add_chunked_req(req)
        admitted = set()
        lora = make_admission(self, adder.can_run)  # at most --max-loras-per-batch adapters run together
        for req in self.policy.order(self.waiting):
            if adder.new_chunked_req is not None:
                break
            if lora is not None and not lora.fits(req):
                continue
            result = adder.add_one(req)
            if result == AddResult.DEFER:
                continue
            if result != AddResult.ADDED:
                break
            admitted.add(id(req))
            if lora is not None:
                lora.add(req)
        self.waiting = [r for r in self.waiting if id(r) not in admitted]
        if not adder.can_run:
            return None
        self.chunked_req = adder.new_chunked_req
        self.last_batch_chunked = self.chunked_req is not None
        return ScheduleBatch(adder.can_run, ForwardMode.EXTEND, self.res)

    def _launch_extend(self, batch: ScheduleBatch) -> ForwardDone:
        fb = batch.build_extend()
        batch.commit_extend()
        out = self._forward(fb)
        self.stats["forward_steps"] += 1
        self.stats["prefill_steps"] += 1
        self.stats["prefill_tokens"] += fb.num_tokens
        self._record_input_logprobs(batch.reqs, fb, out)
        record_pooled(batch.reqs, fb, out, self.pooler)
        rows = [i for i, r in enumerate(batch.reqs) if not r.is_chunked and r.sampling_params.max_new_tokens > 0]
        done_rows = frozenset(i for i, r in enumerate(batch.reqs)
                              if not r.is_chunked and r.sampling_params.max_new_tokens == 0)
        forward = ForwardDone(fb.forward_mode, batch.reqs, out.next_token_logits, rows, done_rows=done_rows,
                              seq=self.forward_seq)
        # They decode from the next step on, before their first token is read (overlap).
        self.running.extend(batch.reqs[i] for i in rows)
        for req in batch.reqs:
            # The prompt goes into the radix tree now, not at finish: requests admitted next
            # batch (e.g. deferred ones sharing this prefix) reuse it at once. Queued after the
            # forward pass, which reads the req_to_token rows as they were built.
            self.tree_cache.cache_unfinished_req(req)
        return forward

    def _forward(self, fb):
        self.forward_seq += 1
        return self.runner.forward(fb) if self.mirror is None else self.mirror.forward(fb)

    def _record_input_logprobs(self, reqs: List[Req], fb, out) -> None:
        if not fb.return_logprob or out.input_logits is None:
            return
        offset = 0
        for req, start, n, prefix in zip(reqs, fb.extend_logprob_start_lens_cpu, fb.extend_seq_lens_cpu,
                                         fb.extend_prefix_lens_cpu):
            rows = n - start
            if rows > 0:
                self.output.record_input_logprobs(req, out.input_logits[offset : offset + rows], start, prefix)
            offset += rows

    def _launch_sampling(self, forward: ForwardDone) -> LaunchedBatch:
        """Queue sampling (and output logprobs) of the forward pass's rows and the copies of
        their results to the host; nothing here waits for the device."""
        reqs, logits, rows, pending = forward.reqs, forward.logits, forward.rows, forward.pending
        copies = HostCopies(self.runner.device)
        next_ids = host_ids = logprobs = None
        self.launch_seq += 1
        if rows:
            chosen = [reqs[i] for i in rows]
            if len(rows) != len(reqs):
                logits = logits[to_device(rows, torch.int64, logits.device)]
            info = SamplingBatchInfo.from_reqs(chosen, self.runner.vocab_size(), logits.device, pending)
            info.allowed_token_mask = GrammarSupport.build_mask(chosen, self.runner.vocab_size(), logits.device)
            if self.mirror is not None:
                self.mirror.sample(mirror_rows(forward), info)
            next_ids = self.runner.sample(logits, info)
            logprobs = self.output.launch_output_logprobs(chosen, logits, next_ids, copies)
            host_ids = copies.add(next_ids)
            for j, req in enumerate(chosen):
                req.pending_ref = (self.launch_seq, j)
        elif self.mirror is not None:
            self.mirror.sample(None, None)  # nothing sampled: followers drop this forward pass
        copies.record()
        return LaunchedBatch(self.launch_seq, reqs, forward.mode, rows, next_ids, host_ids, logprobs, copies,
                             not self.overlap, forward.done_rows)

    def _process(self, batch: LaunchedBatch) -> None:
        """Read a launched batch's results: append tokens, check finishes, emit outputs."""
        ids, logprob_row, logprobs = batch.read()
        sampled = {i: j for j, i in enumerate(batch.sampled_rows)}
        for i, req in enumerate(batch.reqs):
            j = sampled.get(i)
            if j is not None and req.pending_ref == (batch.seq, j):
                req.pending_ref = None
            if req.finished_reason is not None:
                continue  # finished while this batch ran (overlap): the extra token is dropped
            if j is None:
                if i not in batch.done_rows:
                    continue  # one chunk of a longer prompt
                req.finished_reason = finish_length(0)
            else:
                if j in logprob_row:
                    self.output.record_output_logprob(req, logprobs, logprob_row[j], ids[j])
                self._append(req, ids[j])
            if req.to_abort is not None and req.finished_reason is None:
                req.finished_reason = finish_abort(req.to_abort)
            self._after_token(req)
        self._drop_finished()

    def _append(self, req: Req, token: int) -> None:
        req.output_ids.append(token)
        self.grammar.accept(req, token)
        self.output.check_finished(req)
        if (req.finished_reason is None and req.grammar is not None and token in self.grammar.eos_token_ids
                and req.grammar.is_terminated()):
            req.finished_reason = finish_matched_token(token)  # the grammar ended (even with ignore_eos)

    def _after_token(self, req: Req) -> None:
        """Finish or stream a request after its new token (running membership was decided at
        launch; `_drop_finished` removes finished requests from the queues)."""
        if req.finished_reason is None and req.grammar is not None and apply_jump_forward(self, req):
            return
        if req.finished_reason is not None:
            self.tree_cache.cache_finished_req(req)
            if self.spec is not None:
                self.spec.on_finish(req)
            self.outbox.append(self.output.make_token_out(req))
            return
        if self.output.should_send(req):
            self.outbox.append(self.output.make_token_out(req))

    def _drop_finished(self) -> None:
        # A retracted request may finish from the token it had in flight: it is in `waiting`.
        self.running = [r for r in self.running if r.finished_reason is None]
        self.waiting = [r for r in self.waiting if r.finished_reason is None]

    def _launch_decode(self) -> Optional[ForwardDone]:
        self._finish_aborted_running()
        self._pause_chunked_req_if_short()
        retracted = retract_for_decode(self.running, self.runner.allocator, self.tree_cache)
        if retracted:
            self.stats["num_retractions"] += len(retracted)
            self.ratio.on_retract()
            self.running = [r for r in self.running if r not in retracted]
            self.waiting = retracted + self.waiting
        self._finish_aborted_running()
        # Requests whose in-flight token is their last by length stay in `running` until it is
        # read, but get no further step (it would be computed and dropped).
        reqs = [r for r in self.running if not r.finishes_with_pending(self.runner.context_len)]
        if self.in_batch_jump and needs_catch_up(reqs):
            return launch_catch_up(self)
        if self.spec is not None and self.spec.wants(len(reqs)):
            reqs = self._speculate(reqs)
        if not reqs:
            return None
        batch = ScheduleBatch(reqs, ForwardMode.DECODE, self.res)
        fb = batch.build_decode(self.inflight.device_ids() if self.inflight is not None else None)
        out = self._forward(fb)
        batch.commit_decode()
        self.stats["forward_steps"] += 1
        self.stats["decode_steps"] += 1
        self.ratio.step()
        pending = None
        if batch.pending_rows:
            rows = batch.pending_rows
            ids = fb.input_ids if len(rows) == len(batch.reqs) else fb.input_ids[to_device(rows, torch.int64, fb.input_ids.device)]
            pending = PendingTokens(rows, ids)
        return ForwardDone(ForwardMode.DECODE, batch.reqs, out.next_token_logits, list(range(len(batch.reqs))),
                           pending, seq=self.forward_seq)

    def _speculate(self, reqs: List[Req]) -> List[Req]:
        """A speculative step for `reqs`; returns the requests still to decode plainly (all of
        them when nothing was drafted, none after a verify pass). Drafting needs the newest
        tokens, so the batch in flight is processed first (no overlap for this step)."""
        self.drain()
        reqs = [r for r in reqs if r.is_live() and r.finished_reason is None]
        if not reqs or not self.spec.run(self, reqs):
            return reqs
        self.stats["forward_steps"] += 1
        self.stats["decode_steps"] += 1
        self.ratio.step()
        return []

    def _pause_chunked_req_if_short(self) -> None:
        """A half-prefilled request holds locked KV; running decodes come first, so when they are
        short of memory it goes back to the queue (its chunks stay in the cache for later)."""
        req = self.chunked_req
        avail = self.runner.allocator.available_size() + self.tree_cache.evictable_size()
        if req is None or avail >= len(self.running):
            return
        self.chunked_req = None
        self.tree_cache.cache_finished_req(req)
        req.reset_memory_state()
        req.is_chunked = False
        req.num_retractions += 1
        self.stats["num_retractions"] += 1
        self.waiting.insert(0, req)

    def _finish_aborted_running(self) -> None:
        aborted = [r for r in self.running if r.to_abort is not None]
        for req in aborted:
            req.finished_reason = finish_abort(req.to_abort)
            self._after_token(req)
        if aborted:
            self._drop_finished()

    # ---------------------------------------------------------------- checks
    def check_memory_idle(self) -> Optional[str]:
        """When idle, every KV slot must be free or held by the (unlocked) cache."""
        return None if self.has_work() else kv_leak(self)
