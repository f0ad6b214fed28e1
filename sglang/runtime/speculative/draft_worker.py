"""DRAFT: a separate small checkpoint (same tokenizer) proposes the drafts, greedily.

The draft model has its own ModelRunner: its own weights, KV pool and req_to_token table (no
prefix sharing). Per request it remembers which tokens its KV holds (`DraftState.tokens`). A
speculative step first catches the draft KV up with the request's text (one extend pass over
the tokens added since: the previous step's accepted tokens, or the whole prompt the first time),
then runs k - 1 more one-token passes, each feeding the previous draft token. Draft tokens are
the draft model's argmax, so the draft distribution is one-hot and the verification in
rejection_sampler.py is exact as for NGRAM. After drafting, the draft KV is cut back to the
request's text (the drafts' own KV is freed): the next step re-reads whichever were accepted.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch

from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import OutOfKVMemory
from sglang.runtime.speculative.spec_worker import NgramSpecWorker
from sglang.runtime.speculative.tree_verify import RowsSpec
from sglang.runtime.speculative.verify_batch import extend_batch

logger = logging.getLogger(__name__)


@dataclass
class DraftState:
    row: int  # the request's row in the draft req_to_token table
    req: Req
    tokens: List[int] = field(default_factory=list)  # token ids whose draft KV is written, in order


class _DraftKV:
    """The draft runner's memory as `extend_batch` wants it (nothing to evict: no cache)."""

    def __init__(self, runner):
        self.req_to_token_pool = runner.req_to_token_pool
        self.allocator = runner.allocator
        self.kv_pool = runner.kv_pool
        self.device = runner.device

    def alloc_slots(self, n: int):
        return self.allocator.alloc(n)


# Draft KV pool cap (tokens): the target's pool is sized from most of the device memory, which is
# no longer free; speculation runs only for small batches, so this holds their texts. When it
# runs out, every request's draft KV is dropped and rebuilt on demand (a step without drafts).
DRAFT_POOL_MAX_TOKENS = 1 << 17


def draft_server_args(server_args, target_runner):
    """The draft model's options: the target's, with its own checkpoint and no speculation; its
    KV pool as large as the target's up to DRAFT_POOL_MAX_TOKENS."""
    path = server_args.speculative_draft_model_path
    return dataclasses.replace(
        server_args, model_path=path, tokenizer_path=path, served_model_name=path, speculative_algorithm=None,
        quantization=None, load_format="auto", max_total_tokens=min(target_runner.max_total_num_tokens, DRAFT_POOL_MAX_TOKENS),
        max_running_requests=target_runner.max_running_requests, context_length=target_runner.context_len,
        # drafting steps after the catch-up are one decode row per speculating request
        cuda_graph_max_bs=max(1, server_args.speculative_disable_batch_size))


class DraftModelSpecWorker(NgramSpecWorker):
    def __init__(self, server_args, vocab_size: int, context_len: int, target_runner=None):
        super().__init__(server_args, vocab_size, context_len)
        from sglang.runtime.model_executor.model_runner import ModelRunner

        if server_args.speculative_num_steps:
            self.max_draft = min(self.max_draft, server_args.speculative_num_steps)
        self.runner = ModelRunner(draft_server_args(server_args, target_runner))
        if self.runner.vocab_size() > vocab_size:
            raise ValueError(f"draft model vocabulary ({self.runner.vocab_size()}) is larger than the target's "
                             f"({vocab_size}); --speculative-draft-model-path needs the target's tokenizer")
        self.kv = _DraftKV(self.runner)
        self.states: Dict[int, DraftState] = {}

    # ---------------------------------------------------------------- draft KV bookkeeping
    def on_finish(self, req: Req) -> None:
        state = self.states.pop(id(req), None)
        if state is not None:
            self._truncate(state, 0)
            self.kv.req_to_token_pool.free(state.row)

    def _truncate(self, state: DraftState, keep: int) -> None:
        if len(state.tokens) > keep:
            self.kv.allocator.free(self.kv.req_to_token_pool.read(state.row, keep, len(state.tokens)))
            del state.tokens[keep:]

    def _state(self, req: Req) -> DraftState:
        state = self.states.get(id(req))
        if state is None:
            row = self.kv.req_to_token_pool.alloc(1)
            if row is None:
                raise OutOfKVMemory("draft model: no free request row")
            state = self.states[id(req)] = DraftState(row[0], req)
        # Text the draft KV holds that the request no longer has (jump-forward re-tokenized it,
        # retraction restarted it): cut back to the common prefix.
        ids = req.all_ids
        common = 0
        for a, b in zip(state.tokens, ids):
            if a != b:
                break
            common += 1
        self._truncate(state, min(common, len(ids) - 1))
        return state

    def release_all(self) -> None:
        for key in list(self.states):
            state = self.states.pop(key)
            self._truncate(state, 0)
            self.kv.req_to_token_pool.free(state.row)

    # ---------------------------------------------------------------- drafting
    def propose(self, reqs: Sequence[Req], rooms: List[int]) -> List[List[int]]:
        try:
            return self._propose(reqs, rooms)
        except OutOfKVMemory:
            logger.warning("draft model KV pool full: dropping all draft KV (rebuilt on demand)")
            self.release_all()
            return [[] for _ in reqs]

    def _propose(self, reqs: Sequence[Req], rooms: List[int]) -> List[List[int]]:
        for state in [s for s in self.states.values() if s.req.finished_reason is not None]:
            self.on_finish(state.req)  # finished without passing through on_finish (aborted while queued)
        active = [(r, n) for r, n in zip(reqs, rooms) if n > 0]
        drafts: Dict[int, List[int]] = {id(r): [] for r in reqs}
        if not active:
            return [[] for _ in reqs]
        states = [self._state(r) for r, _ in active]
        # Catch up: every token of the text the draft KV lacks, newest included.
        feeds = [r.all_ids[len(s.tokens):] for (r, _), s in zip(active, states)]
        for step in range(max(n for _, n in active)):
            live = [i for i, (_, n) in enumerate(active) if n > step]
            rows, prefix_lens = [states[i].row for i in live], [len(states[i].tokens) for i in live]
            if step == 0:
                fb = extend_batch(rows, prefix_lens, [feeds[i] for i in live], self.kv, all_logits=False)
            else:  # one token each: decode rows (CUDA graphs on GPU)
                fb = self._decode_rows(rows, prefix_lens, [feeds[i][0] for i in live])
            next_ids = self.runner.forward(fb).next_token_logits.argmax(dim=-1).tolist()
            for i, tok in zip(live, next_ids):
                states[i].tokens.extend(feeds[i])
                drafts[id(active[i][0])].append(tok)
                feeds[i] = [tok]
        for (req, _), state in zip(active, states):
            self._truncate(state, req.seqlen)  # drop the drafts' KV; keep the request's text
        return [drafts[id(r)] for r in reqs]

    def _decode_rows(self, rows: List[int], prefix_lens: List[int], tokens: List[int]):
        """A DECODE batch: token i at position prefix_lens[i] of draft table row rows[i]."""
        slots = self.kv.alloc_slots(len(tokens))
        if slots is None:
            raise OutOfKVMemory(f"cannot allocate {len(tokens)} KV slots for a draft step")
        spec = RowsSpec(tokens, prefix_lens, rows, [p + 1 for p in prefix_lens],
                        [(r, p, s) for r, p, s in zip(rows, prefix_lens, slots.tolist())])
        return spec.build(slots.to(torch.int64), self.kv)
