"""EAGLE drafting: the head's runner and the per-step tree growth.

The head shares the target's req_to_token table and slot allocator; its KV pool is indexed by the
target's KV slots, so its entry for position p of a request sits in the slot of the target's KV
for p. Entry p is computed from (token p + 1, the target's feature at p) and exists once token
p + 1 is known: a speculative step first *catches up* the entries from where the request's head
KV ends up to position n - 2 (n = tokens so far; the newest token n - 1 has no target KV yet), in
one extend pass whose last row yields the first draft tokens and the predicted feature of n - 1.
Each further step runs the `topk` frontier nodes as decode rows (their own ancestors visible
through branch rows, see tree_verify.py), with fresh KV slots that are freed after drafting.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch

from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import KVResources, OutOfKVMemory
from sglang.runtime.mem_cache.mla_pool import make_kv_pool
from sglang.runtime.model_executor.cuda_graph_runner import capture_batch_sizes
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.speculative.eagle_features import FeatureStore, attach_feature_store
from sglang.runtime.speculative.eagle_tree import TreeGrower
from sglang.runtime.speculative.tree_verify import RowsSpec
from sglang.runtime.speculative.verify_batch import extend_batch

logger = logging.getLogger(__name__)

# config.json architectures of EAGLE-1/2 heads name the target family; ours are the head classes.
_HEAD_ARCH = {"LlamaForCausalLM": "LlamaForCausalLMEagle", "LlamaForCausalLMEagle": "LlamaForCausalLMEagle",
              "LlamaForCausalLMEagle3": "LlamaForCausalLMEagle3"}


class EagleDraftRunner(ModelRunner):
    """A ModelRunner for the head: the target's table and allocator, a KV pool by target slot."""

    is_draft = True
    defer_cuda_graphs = True  # captured once the head has the target's embedding (EagleDrafter)

    def __init__(self, server_args, target: ModelRunner):
        self.target = target
        super().__init__(server_args)

    def _wants_cuda_graph(self) -> bool:
        # Padded graph rows use the target's all-zero table row (the head shares its table).
        return super()._wants_cuda_graph() and self.target.padding_req_row is not None

    def cuda_graph_batch_sizes(self):
        # Rows are frontier nodes (up to topk per request), not requests: not capped by max running.
        return capture_batch_sizes(self.server_args.cuda_graph_max_bs)

    def _model_config(self, server_args) -> ModelConfig:
        cfg = super()._model_config(server_args)
        head = _HEAD_ARCH.get(cfg.architecture)
        if head is None:
            raise ValueError(f"--speculative-draft-model-path {server_args.model_path!r} is a {cfg.architecture} "
                             f"checkpoint; EAGLE heads supported: {sorted(set(_HEAD_ARCH.values()))} (EAGLE-1/2 "
                             f"checkpoints say LlamaForCausalLM)")
        cfg.architecture, cfg.model_impl = head, "sglang"
        return cfg

    def _init_memory(self) -> None:
        t = self.target
        self.max_total_num_tokens, self.max_running_requests = t.max_total_num_tokens, t.max_running_requests
        self.req_to_token_pool, self.allocator, self.padding_req_row = t.req_to_token_pool, t.allocator, t.padding_req_row
        cfg = self.model_config
        self.kv_pool = make_kv_pool(cfg, t.max_total_num_tokens, self.kv_dtype(), cfg.num_key_value_heads, self.device)


def head_server_args(server_args, target: ModelRunner):
    path = server_args.speculative_draft_model_path
    return dataclasses.replace(
        server_args, model_path=path, tokenizer_path=path, served_model_name=path, speculative_algorithm=None,
        quantization=None, load_format="auto" if server_args.load_format != "dummy" else "dummy",
        context_length=target.context_len, dtype=str(target.dtype).replace("torch.", ""),
        disable_cpu_kernels=True, enable_lora=False, enable_fused_gemv=False,
        # tree levels: up to topk frontier rows for each request of a speculating batch
        cuda_graph_max_bs=max(1, server_args.speculative_disable_batch_size) * server_args.speculative_eagle_topk)


@dataclass
class HeadState:
    """What a request's head KV holds: entries for positions < len(ids) - 1 (ids = its tokens up
    to the one after the last entry), on the rows/slots it had then."""

    req: Req
    row: int
    retractions: int
    ids: List[int]
    last_slot: int


class EagleDrafter:
    def __init__(self, server_args, target: ModelRunner):
        self.topk = server_args.speculative_eagle_topk
        self.steps = server_args.speculative_num_steps
        self.max_nodes = server_args.speculative_num_draft_tokens - 1
        self.runner = EagleDraftRunner(head_server_args(server_args, target), target)
        head = self.runner.model
        head.bind_target(target.model)
        cfg = target.model_config
        layers = head.target_feature_layers(cfg.num_hidden_layers)
        width = cfg.hidden_size * (len(layers) if layers is not None else 1)
        self.store = FeatureStore(target.max_total_num_tokens, width, target.dtype, target.device, layers)
        attach_feature_store(target.model, self.store)
        if self.runner.use_cuda_graph:
            self.runner.capture_cuda_graphs()
        self.head = head
        self.kv = None  # set by bind_cache (needs the scheduler's tree cache for eviction)
        self.states: Dict[int, HeadState] = {}

    def bind_cache(self, tree_cache) -> None:
        # The head's memory view: the target's table and allocator (evicting from its cache), the
        # head's KV pool.
        r = self.runner
        self.kv = KVResources(r.req_to_token_pool, r.allocator, r.kv_pool, tree_cache, r.device)

    def forget(self, req: Req) -> None:
        self.states.pop(id(req), None)

    # ---------------------------------------------------------------- catch-up
    def _entries_valid(self, req: Req) -> int:
        """Positions whose head entries this request's text still matches."""
        state = self.states.get(id(req))
        if state is None or state.row != req.req_pool_idx or state.retractions != req.num_retractions:
            return 0
        ids = req.all_ids
        m = len(state.ids)
        if m < 2 or ids[:m] != state.ids:
            return 0
        slot = int(self.kv.req_to_token_pool.host_table[req.req_pool_idx, m - 2])
        return m - 1 if slot == state.last_slot else 0

    def _catch_up(self, reqs: Sequence[Req]):
        """Head entries up to position n - 2 for each request; returns (logits, hidden) of each
        request's last row (position n - 2: it predicts the token after the newest)."""
        starts, feeds, slot_lists, feats = [], [], [], []
        table = self.kv.req_to_token_pool
        for req in reqs:
            n = req.seqlen
            start = min(self._entries_valid(req), n - 2)
            slots = table.read(req.req_pool_idx, start, n - 1)
            starts.append(start)
            feeds.append(req.all_ids[start + 1:n])
            slot_lists.append(slots)
            feats.append(self.store.read(slots.to(self.store.buffer.device)))
        fb = extend_batch([r.req_pool_idx for r in reqs], starts, feeds, self.kv, all_logits=False,
                          slots=torch.cat(slot_lists))
        fb.spec_features = torch.cat(feats)
        out = self.runner.forward(fb)
        for req, slots in zip(reqs, slot_lists):
            ids = req.all_ids
            self.states[id(req)] = HeadState(req, req.req_pool_idx, req.num_retractions, ids[:req.seqlen],
                                             int(table.host_table[req.req_pool_idx, req.seqlen - 2]))
        return out.next_token_logits, out.hidden_states

    # ---------------------------------------------------------------- tree growth
    def draft(self, reqs: Sequence[Req], rooms: Sequence[int], blocks: Sequence[Sequence[int]]) -> List:
        """A TreeGrower per request (root only where its room is 0)."""
        for key in [k for k, s in self.states.items() if s.req.finished_reason is not None]:
            del self.states[key]  # finished without passing through on_finish (aborted while retracted)
        growers = [TreeGrower(r.output_ids[-1]) for r in reqs]
        active = [i for i, n in enumerate(rooms) if n > 0]
        if not active:
            return growers
        logits, hidden = self._catch_up([reqs[i] for i in active])
        frontier = {i: [] for i in active}  # request -> [(node, feature row)]
        scores = torch.log_softmax(logits, dim=-1)
        top_lp, top_ids = scores.topk(min(self.topk, scores.shape[-1]), dim=-1)
        top_ids = self.head.draft_ids_to_target(top_ids)
        for row, i in enumerate(active):
            for lp, tok in zip(top_lp[row].tolist(), top_ids[row].tolist()):
                frontier[i].append((growers[i].add(0, tok, lp), hidden[row]))
        used: List[torch.Tensor] = []
        try:
            for depth in range(2, self.steps + 1):
                live = [i for i in active if rooms[i] >= depth and frontier[i]]
                if not live:
                    break
                frontier = self._expand(reqs, growers, frontier, live, blocks, used)
        finally:
            for slots in used:
                self.kv.allocator.free(slots)
        return growers

    def _expand(self, reqs, growers, frontier, live, blocks, used):
        """Run every frontier node one head step; its top-k children join the tree and the best
        `topk` of each request's new candidates become the next frontier."""
        spec = RowsSpec.empty()
        feats, owners = [], []
        count = sum(len(frontier[i]) for i in live)
        slots = self.kv.alloc_slots(count)
        if slots is None:
            raise OutOfKVMemory(f"cannot allocate {count} KV slots for EAGLE drafting")
        slots = slots.to(torch.int64)
        used.append(slots)
        slot_list = slots.tolist()
        k = 0
        for i in live:
            req, grower = reqs[i], growers[i]
            base = req.kv_committed_len - 1  # entry of a depth-d node sits at column base + d
            for (node, feat), row in zip(frontier[i], blocks[i]):
                grower.slot[node] = slot_list[k]
                for a in _ancestors(grower, node):
                    spec.cells.append((row, base + grower.depths[a], grower.slot[a]))
                d = grower.depths[node]
                spec.ids.append(grower.tokens[node])
                spec.rope.append(base + d + req.rope_delta)
                spec.rows.append(row)
                spec.seq_lens.append(base + d + 1)
                feats.append(feat)
                owners.append((i, node))
                k += 1
        fb = spec.build(slots, self.kv)
        fb.spec_features = torch.stack(feats)
        out = self.runner.forward(fb)
        scores = torch.log_softmax(out.next_token_logits, dim=-1)
        top_lp, top_ids = scores.topk(min(self.topk, scores.shape[-1]), dim=-1)
        top_ids = self.head.draft_ids_to_target(top_ids)
        candidates: Dict[int, List] = {i: [] for i in live}
        for row, (i, node) in enumerate(owners):
            for lp, tok in zip(top_lp[row].tolist(), top_ids[row].tolist()):
                candidates[i].append((growers[i].add(node, tok, lp), out.hidden_states[row]))
        nxt = {}
        for i in live:
            best = set(growers[i].best([c for c, _ in candidates[i]], self.topk))
            nxt[i] = [(c, f) for c, f in candidates[i] if c in best]
        return nxt


def _ancestors(grower: TreeGrower, node: int) -> List[int]:
    """Drafted nodes from depth 1 down to `node` (the root has no head entry of its own)."""
    out = []
    while node > 0:
        out.append(node)
        node = grower.parents[node]
    return out[::-1]
