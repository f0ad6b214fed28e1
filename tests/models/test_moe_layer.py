"""The mixture-of-experts layer pieces: routing variants (against transformers' routers), the
experts grouped by expert (against a per-token loop), per-expert weight loading, and the
tensor-parallel split of the intermediate dim."""

from __future__ import annotations

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.distributed.tensor_parallel import TensorParallel, tensor_parallel
from sglang.runtime.layers.activation import silu_and_mul_ref
from sglang.runtime.layers.moe import FusedMoE, MoEBlock, RouterConfig, expert_weight_mapping, select_experts
from sglang.runtime.layers.moe.experts_torch import fused_experts_dense, fused_experts_torch, group_by_expert
from sglang.runtime.models.weight_utils import load_named_weights


def _loop_reference(x, w13, w2, weights, ids):
    """Token by token, slot by slot: the definition the grouped computation must equal."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            out[t] += weights[t, j] * (silu_and_mul_ref(x[t] @ w13[e].t()) @ w2[e].t())
    return out


@settings(max_examples=25, deadline=None)
@given(tokens=st.integers(1, 12), experts=st.integers(1, 6), k=st.integers(1, 3), seed=st.integers(0, 99))
def test_grouped_experts_equal_per_token_loop(tokens, experts, k, seed):
    k = min(k, experts)
    gen = torch.Generator().manual_seed(seed)
    hidden, inter = 8, 6
    x = torch.randn(tokens, hidden, generator=gen, dtype=torch.float64)
    w13 = torch.randn(experts, 2 * inter, hidden, generator=gen, dtype=torch.float64)
    w2 = torch.randn(experts, hidden, inter, generator=gen, dtype=torch.float64)
    ids = torch.stack([torch.randperm(experts, generator=gen)[:k] for _ in range(tokens)])
    weights = torch.rand(tokens, k, generator=gen, dtype=torch.float64)
    expected = _loop_reference(x, w13, w2, weights, ids)
    got = fused_experts_torch(x, w13, w2, weights, ids, silu_and_mul_ref)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    dense = fused_experts_dense(x, w13, w2, weights, ids, silu_and_mul_ref)  # the CUDA-graph form
    torch.testing.assert_close(dense, expected, rtol=1e-10, atol=1e-10)


def test_group_by_expert_segments_are_sorted_and_stable():
    ids = torch.tensor([[2, 0], [0, 1], [2, 1]])
    g = group_by_expert(ids, 4)
    assert g.offsets.tolist() == [0, 2, 4, 6, 6]  # expert 3 gets no rows
    assert ids.reshape(-1)[g.order].tolist() == [0, 0, 1, 1, 2, 2]
    assert g.token_rows(2).tolist() == [0, 1, 1, 2, 0, 2]  # token order kept inside an expert


def test_softmax_routing_matches_transformers_qwen_router_both_renormalizations():
    gen = torch.Generator().manual_seed(0)
    logits_in = torch.randn(9, 16, generator=gen)
    for norm in (False, True):
        cfg = transformers.Qwen3MoeConfig(hidden_size=16, num_experts=8, num_experts_per_tok=3, norm_topk_prob=norm)
        router = transformers.models.qwen3_moe.modeling_qwen3_moe.Qwen3MoeTopKRouter(cfg)
        router.weight.data = torch.randn(8, 16, generator=gen)
        logits, ref_w, ref_ids = router(logits_in)
        w, ids = select_experts(logits, RouterConfig(3, renormalize=norm))
        assert torch.equal(ids, ref_ids)
        torch.testing.assert_close(w, ref_w.float())
        assert torch.allclose(w.sum(-1), torch.ones(9)) is norm


def test_grouped_sigmoid_routing_matches_transformers_deepseek_v3_router():
    cfg = transformers.DeepseekV3Config(hidden_size=16, n_routed_experts=16, num_experts_per_tok=4, n_group=4,
                                        topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.5)
    router = transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3TopkRouter(cfg)
    gen = torch.Generator().manual_seed(1)
    router.weight.data = torch.randn(16, 16, generator=gen)
    router.e_score_correction_bias.copy_(torch.randn(16, generator=gen) * 0.5)
    x = torch.randn(20, 16, generator=gen)
    logits, ref_w, ref_ids = router(x)
    ours = RouterConfig(4, renormalize=True, scoring_func="sigmoid", num_expert_group=4, topk_group=2,
                        routed_scaling_factor=2.5)
    w, ids = select_experts(logits, ours, correction_bias=router.e_score_correction_bias)
    ref_order, our_order = ref_ids.sort(-1), ids.sort(-1)  # HF's top-k is unsorted
    assert torch.equal(our_order.values, ref_order.values)
    torch.testing.assert_close(w.gather(1, our_order.indices), ref_w.gather(1, ref_order.indices))
    # without the bias the choice differs for some token: the bias really steers
    _, plain = select_experts(logits, ours)
    assert not torch.equal(plain.sort(-1).values, ids.sort(-1).values)
    groups = ids // 4  # every chosen expert lies in one of the topk_group groups
    assert all(len(set(row.tolist())) <= 2 for row in groups)


def test_router_config_errors_name_the_field():
    with pytest.raises(ValueError, match="scoring_func"):
        RouterConfig(2, scoring_func="relu")
    with pytest.raises(ValueError, match="n_group and topk_group"):
        RouterConfig(2, num_expert_group=4)
    with pytest.raises(ValueError, match="exceeds the 4 experts"):
        select_experts(torch.zeros(1, 4), RouterConfig(5))


def _expert_tensors(experts: int, hidden: int, inter: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return {(e, s): torch.randn(*((hidden, inter) if s == "w2" else (inter, hidden)), generator=gen)
            for e in range(experts) for s in ("w1", "w2", "w3")}


def _load(layer: FusedMoE, tensors) -> None:
    for (e, slot), t in tensors.items():
        param = layer.w2_weight if slot == "w2" else layer.w13_weight
        layer.weight_loader(param, t, (e, slot))


def test_weight_loader_stacks_gate_up_and_down_per_expert():
    tensors = _expert_tensors(3, 8, 6)
    layer = FusedMoE(3, 8, 6)
    _load(layer, tensors)
    for e in range(3):
        assert torch.equal(layer.w13_weight[e], torch.cat([tensors[e, "w1"], tensors[e, "w3"]]))
        assert torch.equal(layer.w2_weight[e], tensors[e, "w2"])
    with pytest.raises(ValueError, match="expert 1 w3 projection"):
        layer.weight_loader(layer.w13_weight, torch.zeros(5, 8), (1, "w3"))
    with pytest.raises(ValueError, match="expert shard id"):
        layer.weight_loader(layer.w13_weight, tensors[0, "w1"], (3, "w1"))
    with pytest.raises(ValueError, match="FP8 experts are read from checkpoints with block-wise scales"):
        layer.weight_loader(layer.w2_weight, tensors[0, "w2"].to(torch.float8_e4m3fn), (0, "w2"))


def test_tensor_parallel_ranks_hold_intermediate_slices_that_sum_to_the_whole():
    experts, hidden, inter = 4, 8, 6
    tensors = _expert_tensors(experts, hidden, inter, seed=2)
    full = FusedMoE(experts, hidden, inter)
    _load(full, tensors)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, hidden, generator=gen)
    weights, ids = select_experts(torch.randn(5, experts, generator=gen), RouterConfig(2))
    parts = []
    for rank in range(2):
        with tensor_parallel(TensorParallel(rank, 2, None)):  # the scope the loader builds in
            shard = FusedMoE(experts, hidden, inter)
        assert shard.w13_weight.shape == (experts, inter, hidden) and shard.w2_weight.shape == (experts, hidden, 3)
        _load(shard, tensors)
        parts.append(shard.partial_output(x, weights, ids))
    torch.testing.assert_close(parts[0] + parts[1], full(x, weights, ids))
    with pytest.raises(ValueError, match="not divisible by tp_size=4"):
        FusedMoE(experts, hidden, inter, tp_rank=0, tp_size=4)


def test_block_loads_checkpoint_names_and_reports_a_missing_expert():
    experts, hidden, inter = 3, 8, 4
    block = torch.nn.ModuleDict({"mlp": MoEBlock(hidden, experts, inter, RouterConfig(2))})
    tensors = _expert_tensors(experts, hidden, inter)
    names = {"w1": "gate_proj", "w2": "down_proj", "w3": "up_proj"}
    ckpt = {f"mlp.experts.{e}.{names[s]}.weight": t for (e, s), t in tensors.items()}
    ckpt["mlp.gate.weight"] = torch.randn(experts, hidden)
    mapping = expert_weight_mapping(experts)
    load_named_weights(block, ckpt.items(), mapping)
    assert torch.equal(block["mlp"].experts.w2_weight[2], tensors[2, "w2"])
    del ckpt["mlp.experts.1.up_proj.weight"]
    with pytest.raises(ValueError, match=r"missing 1 tensor\(s\).*mlp\.experts\.1\.up_proj\.weight"):
        load_named_weights(block, ckpt.items(), mapping)


def test_group_limited_greedy_routing_matches_transformers_deepseek_v2_router():
    cfg = transformers.DeepseekV2Config(hidden_size=16, num_attention_heads=4, n_routed_experts=16,
                                        num_experts_per_tok=3, n_group=4,
                                        topk_group=2, topk_method="group_limited_greedy", routed_scaling_factor=1.5)
    router = transformers.models.deepseek_v2.modeling_deepseek_v2.DeepseekV2TopkRouter(cfg)
    gen = torch.Generator().manual_seed(4)
    router.weight.data = torch.randn(16, 16, generator=gen)
    logits, ref_w, ref_ids = router(torch.randn(20, 16, generator=gen))
    ours = RouterConfig(3, renormalize=False, num_expert_group=4, topk_group=2, group_score="max",
                        routed_scaling_factor=1.5)
    w, ids = select_experts(logits, ours)
    ref_order, our_order = ref_ids.sort(-1), ids.sort(-1)
    assert torch.equal(our_order.values, ref_order.values)
    torch.testing.assert_close(w.gather(1, our_order.indices), ref_w.gather(1, ref_order.indices))
    # The group score matters: by its best expert group 0 wins, by its two best group 1 does.
    probs = torch.tensor([[0.5, 1e-4, 0.3, 0.3]]).log()
    by_max = RouterConfig(1, num_expert_group=2, topk_group=1, group_score="max")
    assert select_experts(probs, by_max)[1].item() == 0
    assert select_experts(probs, RouterConfig(1, num_expert_group=2, topk_group=1))[1].item() in (2, 3)


@settings(max_examples=30, deadline=None)
@given(tokens=st.integers(1, 40), experts=st.integers(1, 9), k=st.integers(1, 3), block=st.sampled_from([1, 4, 16]),
       seed=st.integers(0, 99))
def test_triton_row_alignment_gives_each_block_one_expert(tokens, experts, k, block, seed):
    align_rows = pytest.importorskip("sglang.kernels.fused_moe").align_rows
    k = min(k, experts)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(experts, generator=gen)[:k] for _ in range(tokens)])
    rows, block_expert = align_rows(ids, experts, block)
    n = tokens * k
    assert rows.numel() % block == 0 and rows.numel() <= n + experts * (block - 1) + block - 1
    real = rows[rows < n]
    assert sorted(real.tolist()) == list(range(n))  # every (token, slot) row exactly once
    per_block = rows.view(-1, block)
    for b, expert in enumerate(block_expert.tolist()):
        inside = per_block[b][per_block[b] < n]
        if expert < 0:
            assert inside.numel() == 0
        else:
            assert (ids.reshape(-1)[inside] == expert).all()
    counts = torch.bincount(ids.reshape(-1), minlength=experts)
    assert (block_expert >= 0).sum() == ((counts + block - 1) // block).sum()  # no block wasted
