"""EAGLE's tree pieces alone: growing and selecting (every kept node's parent kept, the best
nodes kept), pruning, the walk (greedy follows the argmax chain; sampling keeps the target
distribution, chi-square over 24k seeded draws), and moving the accepted branch's KV."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.mem_cache.memory_pool import ReqToTokenPool, TokenSlotAllocator
from sglang.runtime.speculative.eagle_tree import DraftTree, TreeGrower, walk
from sglang.runtime.speculative.rejection_sampler import target_probs
from sglang.runtime.speculative.tree_verify import RowsSpec, prune_tree, settle_tree_kv, tree_choices, tree_rows
from tests.speculative.test_verify_distribution import FakeReq, _assert_matches, _params, V
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(-5.0, 0.0)), min_size=1, max_size=40),
       st.integers(0, 45))
def test_select_keeps_the_best_nodes_with_their_parents(adds, max_nodes):
    g = TreeGrower(7)
    for parent_pick, lp in adds:
        g.add(parent_pick % len(g.tokens), parent_pick, lp)
    tree = g.select(max_nodes)
    assert len(tree) == 1 + min(max_nodes, len(adds))
    assert tree.parents[0] == -1 and tree.tokens[0] == 7
    assert all(0 <= p < i for i, p in enumerate(tree.parents) if i > 0)
    kept_scores = sorted((s for s in g.scores[1:]), reverse=True)[: len(tree) - 1]
    if kept_scores:
        # the tree's worst node scores no lower than any node left out
        assert min(kept_scores) >= sorted(g.scores[1:], reverse=True)[len(tree) - 2]


def test_prune_cuts_depth_and_after_stop():
    class R:
        eos_token_ids = {9}
        grammar = None

    # root(1) -> 9 (stop) -> 3 ; root -> 4 -> 5 -> 6
    tree = DraftTree([1, 9, 4, 3, 5, 6], [-1, 0, 0, 1, 2, 4])
    pruned, masks = prune_tree(R(), tree, room=2, vocab_size=10)
    assert masks is None
    assert pruned.tokens == [1, 9, 4, 5] and pruned.parents == [-1, 0, 0, 2]


def test_greedy_walk_follows_the_argmax_chain():
    tree = DraftTree([0, 5, 6, 7, 8], [-1, 0, 0, 1, 2])
    argmax = {0: 6, 1: 1, 2: 8, 3: 2, 4: 3}
    path, emitted = walk(tree, argmax.__getitem__)
    assert path == [0, 2, 4] and emitted == [6, 8, 3]
    path, emitted = walk(tree, {0: 9}.__getitem__)
    assert path == [0] and emitted == [9]


def test_tree_sampling_keeps_the_target_distribution():
    n = 24_000
    params = _params(temperature=1.0)
    g = torch.Generator().manual_seed(3)
    base = torch.randn((3, V), generator=g) * 1.5  # rows: root, child a, child b
    p = target_probs(base, SamplingBatchInfo.from_reqs([FakeReq(params, 0, output_ids=[0] * j) for j in (0, 1, 1)],
                                                       V, "cpu"))
    order = p[0].argsort(descending=True).tolist()
    a, b = order[0], order[3]
    tree = DraftTree([0, a, b], [-1, 0, 0])
    reqs = [FakeReq(params, seed=i, output_ids=[0] * j) for i in range(n) for j in (0, 1, 1)]
    choices = tree_choices(base.repeat(n, 1), SamplingBatchInfo.from_reqs(reqs, V, "cpu")).tolist()
    firsts, after_b = [], []
    for i in range(n):
        path, emitted = walk(tree, lambda u: choices[3 * i + u])
        firsts.append(emitted[0])
        if emitted[0] == b:
            assert path[:2] == [0, 2]
            after_b.append(emitted[1])
    _assert_matches(torch.tensor(firsts), p[0])
    assert len(after_b) > 500
    _assert_matches(torch.tensor(after_b), p[2])


def test_branch_rows_and_settling_the_accepted_branch():
    pool = ReqToTokenPool(4, 32, "cpu")
    alloc = TokenSlotAllocator(64, "cpu")

    class Res:
        req_to_token_pool, allocator, device, kv_pool = pool, alloc, "cpu", None

    class R:
        req_pool_idx, kv_committed_len, rope_delta = 0, 3, 0

    prefix = alloc.alloc(3)
    pool.write(0, 0, 3, prefix)
    pool.copy_prefix([1], [0], [3])
    tree = DraftTree([10, 11, 12, 13], [-1, 0, 0, 1])  # root -> 11 -> 13 ; root -> 12
    slots = alloc.alloc(4).tolist()
    spec = RowsSpec.empty()
    node_rows = tree_rows(spec, tree, 3, 0, 0, [1], slots)
    assert node_rows == [0, 0, 1, 0]
    assert spec.seq_lens == [4, 5, 5, 6] and spec.rope == [3, 4, 4, 5]
    spec.build(torch.tensor(slots), Res())
    assert pool.req_to_token[0, :6].tolist() == prefix.tolist() + [slots[0], slots[1], slots[3]]
    assert pool.req_to_token[1, :5].tolist() == prefix.tolist() + [slots[0], slots[2]]
    before = alloc.available_size()
    req = R()
    settle_tree_kv(req, torch.tensor(slots), [0, 2], 2, Res())
    assert req.kv_committed_len == 5
    assert pool.req_to_token[0, :5].tolist() == prefix.tolist() + [slots[0], slots[2]]
    assert alloc.available_size() == before + 2  # nodes 11 and 13 freed


def test_copy_prefix_on_a_separate_device_table():
    """The device-table path (one gather/scatter for all rows) keeps columns past each row's n."""
    pool = ReqToTokenPool(4, 10, "cpu")
    pool.host_table = torch.zeros_like(pool.req_to_token)  # as on CUDA: host mirror + device table
    pool.req_to_token[0] = torch.arange(10)
    pool.host_table[0] = torch.arange(10)
    pool.req_to_token[1], pool.req_to_token[2] = 99, 77
    pool.copy_prefix([1, 2], [0, 0], [3, 5])
    assert pool.req_to_token[1].tolist() == [0, 1, 2] + [99] * 7
    assert pool.req_to_token[2].tolist() == [0, 1, 2, 3, 4] + [77] * 5
    assert pool.host_table[2].tolist() == [0, 1, 2, 3, 4] + [0] * 5
