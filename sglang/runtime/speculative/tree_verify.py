"""One target pass over EAGLE draft trees, as decode rows, and keeping the accepted branch.

A tree node must attend to the request's prefix and to its own ancestors only. Each leaf's
root-to-leaf path gets a req_to_token row: the request's own row for the first leaf (the columns
past its KV are free to write), a reserved scratch row holding a copy of the prefix for the
others. A node is a decode row on the row of a leaf below it, with seq_len = prefix + depth + 1:
it sees the prefix and exactly its ancestors (the path's earlier columns), and, as every layer
writes all rows' KV before attending, their KV is there. Any decode attention kernel (and a
CUDA graph) computes tree attention this way, with no mask. A chain uses the own row only.

After verification the accepted path's KV slots move to the own row's next columns; every other
node's slot is freed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from sglang.runtime.host_device import host_to_device
from sglang.runtime.managers.req import Req
from sglang.runtime.managers.schedule_batch import OutOfKVMemory, decode_forward_batch
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.sampling.sampler import exponential_race
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo
from sglang.runtime.speculative.eagle_tree import DraftTree
from sglang.runtime.speculative.rejection_sampler import target_probs
from sglang.runtime.speculative.verify_inputs import RowView


class ScratchRows:
    """req_to_token rows reserved for tree branches: `per_req` of them for each of up to
    `max_reqs` requests of a speculative step."""

    def __init__(self, pool, max_reqs: int, per_req: int):
        rows = pool.alloc(max_reqs * per_req)
        if rows is None:
            raise RuntimeError(f"cannot reserve {max_reqs * per_req} req_to_token rows for EAGLE trees")
        self.pool = pool
        self.per_req = per_req
        self.blocks = [rows[i * per_req:(i + 1) * per_req] for i in range(max_reqs)]

    def prepare(self, reqs: Sequence[Req]) -> List[List[int]]:
        """Each request's block, holding a copy of its prefix (KV positions < kv_committed_len)."""
        if len(reqs) > len(self.blocks):
            raise ValueError(f"{len(reqs)} requests in a speculative step; rows reserved for {len(self.blocks)}")
        dst, src, lens = [], [], []
        for req, block in zip(reqs, self.blocks):
            for row in block:
                dst.append(row)
                src.append(req.req_pool_idx)
                lens.append(req.kv_committed_len)
        self.pool.copy_prefix(dst, src, lens)
        return self.blocks[: len(reqs)]


@dataclass
class RowsSpec:
    """Decode rows being assembled: inputs per row and req_to_token cells to write."""

    ids: List[int]
    rope: List[int]
    rows: List[int]
    seq_lens: List[int]
    cells: List[Tuple[int, int, int]]  # (row, column, KV slot)

    @classmethod
    def empty(cls) -> "RowsSpec":
        return cls([], [], [], [], [])

    def build(self, slots: torch.Tensor, res, lora_names=None) -> ForwardBatch:
        """The DECODE batch; `slots[i]` (host int64) is the KV slot row i writes."""
        host = torch.empty((5, len(self.ids)), dtype=torch.int64)
        host[:4] = torch.tensor([self.ids, self.rope, self.rows, self.seq_lens], dtype=torch.int64)
        host[4] = slots
        packed = host_to_device(host, res.device)
        cells = torch.tensor(self.cells, dtype=torch.int64).reshape(-1, 3)
        res.req_to_token_pool.write_points(cells[:, 0], cells[:, 1], cells[:, 2])
        return decode_forward_batch(packed, self.seq_lens, res, lora_names)


def tree_rows(spec: RowsSpec, tree: DraftTree, base: int, rope_shift: int, own_row: int, block: Sequence[int],
              node_slots: Sequence[int]) -> List[int]:
    """Append one row per node of `tree`; node u writes KV slot node_slots[u] at column
    base + depth(u) of every leaf row whose path holds it. Returns each node's req_to_token row."""
    leaf_of = tree.leaf_of()
    leaves = tree.leaves()
    first = leaf_of[0]
    others = [leaf for leaf in leaves if leaf != first]
    if len(others) > len(block):
        raise ValueError(f"a draft tree with {len(leaves)} leaves needs {len(others)} scratch rows; "
                         f"{len(block)} reserved")
    leaf_row = {first: own_row, **{leaf: row for leaf, row in zip(others, block)}}
    for leaf, row in leaf_row.items():
        for u in tree.path(leaf):
            spec.cells.append((row, base + tree.depths[u], node_slots[u]))
    node_rows = [leaf_row[leaf_of[u]] for u in range(len(tree))]
    for u in range(len(tree)):
        spec.ids.append(tree.tokens[u])
        spec.rope.append(base + tree.depths[u] + rope_shift)
        spec.rows.append(node_rows[u])
        spec.seq_lens.append(base + tree.depths[u] + 1)
    return node_rows


def build_tree_verify(reqs: Sequence[Req], trees: Sequence[DraftTree], blocks: Sequence[Sequence[int]],
                      res) -> Tuple[ForwardBatch, List[torch.Tensor]]:
    """The verify pass: every node of every tree as a decode row. Returns the batch and each
    request's node KV slots (host int64, node order)."""
    total = sum(len(t) for t in trees)
    slots = res.alloc_slots(total)
    if slots is None:
        raise OutOfKVMemory(f"cannot allocate {total} KV slots for an EAGLE verify pass")
    slots = slots.to(torch.int64)
    spec = RowsSpec.empty()
    per_req, offset = [], 0
    for req, tree, block in zip(reqs, trees, blocks):
        tree_rows(spec, tree, req.kv_committed_len, req.rope_delta, req.req_pool_idx, block,
                  slots[offset: offset + len(tree)].tolist())
        per_req.append(slots[offset: offset + len(tree)])
        offset += len(tree)
    names = [getattr(r, "lora_name", None) for r, t in zip(reqs, trees) for _ in range(len(t))]
    return spec.build(slots, res, names if any(n is not None for n in names) else None), per_req


def settle_tree_kv(req: Req, node_slots: torch.Tensor, path: Sequence[int], kept: int, res) -> None:
    """Keep the KV of the first `kept` nodes of the accepted `path` (root first) at the request's
    next columns; free every other node's slot."""
    if not 1 <= kept <= len(path):
        raise ValueError(f"kept={kept} must be in [1, {len(path)}]")
    base = req.kv_committed_len
    keep_nodes = list(path[:kept])
    keep_slots = node_slots[keep_nodes]
    cols = torch.arange(base, base + kept, dtype=torch.int64)
    res.req_to_token_pool.write_points(torch.full((kept,), req.req_pool_idx, dtype=torch.int64), cols, keep_slots)
    drop = torch.ones(len(node_slots), dtype=torch.bool)
    drop[keep_nodes] = False
    if bool(drop.any()):
        res.allocator.free(node_slots[drop])
    req.kv_committed_len = base + kept


def tree_row_views(reqs: Sequence[Req], trees: Sequence[DraftTree]) -> List[RowView]:
    """Node u of a request is sampled as if its output already held the path's drafts."""
    views = []
    for req, tree in zip(reqs, trees):
        for u in range(len(tree)):
            drafted = [tree.tokens[x] for x in tree.path(u)[1:]]
            views.append(RowView(req.sampling_params, req.origin_input_ids, req.output_ids + drafted, req.seed,
                                 req.eos_token_ids))
    return views


def tree_row_info(reqs: Sequence[Req], trees: Sequence[DraftTree], masks: Sequence[Optional[torch.Tensor]],
                  vocab_size: int, device) -> SamplingBatchInfo:
    info = SamplingBatchInfo.from_reqs(tree_row_views(reqs, trees), vocab_size, device)
    if any(m is not None for m in masks):
        full = [m if m is not None else torch.ones((len(t), vocab_size), dtype=torch.bool)
                for m, t in zip(masks, trees)]
        info.allowed_token_mask = torch.cat(full).to(device)
    return info


def tree_choices(logits: torch.Tensor, info: SamplingBatchInfo) -> torch.Tensor:
    """The token plain decoding would take at each row: the argmax for greedy rows, else a draw
    from the target distribution (the sampler's filters, its seeded race)."""
    greedy = logits.argmax(dim=-1)
    if info.is_all_greedy:
        return greedy
    probs = target_probs(logits, info)
    token_ids = torch.arange(probs.shape[1], device=probs.device)[None, :]
    return torch.where(info.greedy_mask, greedy, exponential_race(probs, token_ids, info))


def prune_tree(req: Req, tree: DraftTree, room: int, vocab_size: int) -> Tuple[DraftTree, Optional[torch.Tensor]]:
    """Drop nodes deeper than `room`, nodes after a stop token and nodes the grammar rejects;
    return the tree and, when constrained, each kept node's [V] mask of allowed next tokens."""
    eos = req.eos_token_ids
    tree = tree.keep(lambda i: tree.depths[i] <= room and (tree.parents[i] == 0
                                                            or tree.tokens[tree.parents[i]] not in eos))
    grammar = req.grammar
    if grammar is None:
        return tree, None
    masks = torch.zeros((len(tree), vocab_size), dtype=torch.bool)
    kept = [False] * len(tree)
    kept[0] = True

    def visit(u: int) -> None:
        grammar.fill_allowed_mask(masks[u])
        for c in tree.children[u]:
            if grammar.accept_token(tree.tokens[c]):
                kept[c] = True
                visit(c)
                grammar.rollback(1)

    visit(0)
    index = [i for i in range(len(tree)) if kept[i]]
    return tree.keep(lambda i: kept[i]), masks[index]
