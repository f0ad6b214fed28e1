"""EAGLE: a draft head grows a token tree per request from the target's features; one target
pass verifies every node; the accepted branch's tokens are emitted.

A step: reserve each request's branch rows (a prefix copy, tree_verify.ScratchRows), draft
(eagle_draft.py: catch up the head's KV, then `--speculative-num-steps` levels of top-k
expansion), keep the `--speculative-num-draft-tokens - 1` best nodes, cut nodes past the room
left, after stop tokens or rejected by the grammar, verify all nodes as decode rows, walk each
tree along the target's own choices (eagle_tree.walk: greedy is exact; sampling draws every
token from the target distribution), append the emitted tokens through the scheduler's per-token
path, move the accepted branch's KV into the request's row and free the rest.
"""

from __future__ import annotations

import logging
from typing import List, Sequence

import torch

from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import OutOfKVMemory
from sglang.runtime.sampling.penalties import apply_logits_processors
from sglang.runtime.speculative.eagle_draft import EagleDrafter
from sglang.runtime.speculative.eagle_features import scratch_rows_per_req
from sglang.runtime.speculative.eagle_tree import DraftTree, walk
from sglang.runtime.speculative.spec_worker import _MAX_COOLDOWN, NgramSpecWorker
from sglang.runtime.speculative.tree_verify import (ScratchRows, build_tree_verify, prune_tree, settle_tree_kv,
                                                    tree_choices, tree_row_info)

logger = logging.getLogger(__name__)


class EagleSpecWorker(NgramSpecWorker):
    def __init__(self, server_args, vocab_size: int, context_len: int, target_runner=None):
        super().__init__(server_args, vocab_size, context_len)
        self.max_draft = min(self.max_draft, server_args.speculative_num_steps)  # the tree's depth
        self.max_nodes = server_args.speculative_num_draft_tokens - 1
        self.drafter = EagleDrafter(server_args, target_runner)
        self.scratch = ScratchRows(target_runner.req_to_token_pool, max(self.disable_batch_size, 1),
                                   scratch_rows_per_req(server_args))
        self.bound = False
        logger.info("EAGLE: %s head, tree of depth %d, top-%d, %d nodes verified per request",
                    type(self.drafter.head).__name__, self.max_draft, server_args.speculative_eagle_topk,
                    self.max_nodes)

    def on_finish(self, req: Req) -> None:
        self.drafter.forget(req)

    # ---------------------------------------------------------------- the step
    def run(self, sched, reqs: List[Req]) -> bool:
        if not self.bound:
            self.drafter.bind_cache(sched.res.tree_cache)
            self.bound = True
        if any(r.mm_inputs is not None or r.pending_ref is not None or r.kv_committed_len != r.seqlen - 1
               for r in reqs):
            return False
        rooms = self._rooms(reqs, sched.res)
        blocks = self.scratch.prepare(reqs)
        try:
            growers = self.drafter.draft(reqs, rooms, blocks)
        except OutOfKVMemory:
            logger.warning("EAGLE: no KV slots to draft with; decoding plainly this step")
            return False
        trees, masks = [], []
        for req, grower, room in zip(reqs, growers, rooms):
            tree, mask = prune_tree(req, grower.select(self.max_nodes), room, self.vocab_size)
            trees.append(tree)
            masks.append(mask)
        if all(len(t) == 1 for t in trees):
            self.cooldown = min(1 << self.misses, _MAX_COOLDOWN)
            self.misses = min(self.misses + 1, _MAX_COOLDOWN.bit_length())
            return False
        self.misses = 0
        fb, node_slots = build_tree_verify(reqs, trees, blocks, sched.res)
        raw = sched._forward(fb).next_token_logits
        info = tree_row_info(reqs, trees, masks, self.vocab_size, raw.device)
        logits = apply_logits_processors(raw.clone(), info) if info.needs_logits_processing else raw
        choices = tree_choices(logits, info).tolist()
        self._apply_trees(sched, reqs, trees, node_slots, choices, raw)
        return True

    def _rooms(self, reqs: Sequence[Req], res) -> List[int]:
        """Tree depth each request may draft: the step's budget, context, max_new_tokens and
        the free KV (drafting takes topk slots per level; verifying one per node)."""
        budget = res.allocator.available_size() + res.tree_cache.evictable_size() - len(reqs)
        rooms = []
        for req in reqs:
            need = self.max_nodes + self.drafter.topk
            room = max(min(self.max_draft, self.context_len - req.seqlen - 1,
                           req.sampling_params.max_new_tokens - len(req.output_ids) - 1), 0)
            if budget < need:
                room = 0
            budget -= need if room else 0
            rooms.append(room)
        return rooms

    def _apply_trees(self, sched, reqs: List[Req], trees: List[DraftTree], node_slots: List[torch.Tensor],
                     choices: List[int], raw: torch.Tensor) -> None:
        self.stats["spec_verify_passes"] += 1
        offset = 0
        for req, tree, slots in zip(reqs, trees, node_slots):
            path, tokens = walk(tree, lambda u, o=offset: choices[o + u])
            appended = self._emit(sched, req, tokens, raw[[offset + u for u in path]])
            offset += len(tree)
            kept_drafts = min(appended, len(path) - 1)
            settle_tree_kv(req, slots, path, 1 + kept_drafts, sched.res)
            self._count(req, len(tree) - 1, kept_drafts, appended)
            self._after(sched, req)
        sched._drop_finished()
