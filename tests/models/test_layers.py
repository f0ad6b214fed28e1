"""Shared layers: norms, activations, tensor-parallel weight loaders, embeddings, logits rows."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from sglang.runtime.layers.activation import GeluAndMul, SiluAndMul, get_gated_activation
from sglang.runtime.layers.layernorm import GemmaRMSNorm, RMSNorm
from sglang.runtime.layers.linear import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    QKVParallelLinear,
    ReplicatedLinear,
    RowParallelLinear,
)
from sglang.runtime.layers.logits_processor import LogitsProcessor, input_logit_row_indices
from sglang.runtime.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from sglang.runtime.model_executor.forward_batch import ForwardMode

GEN = torch.Generator().manual_seed(0)


def rnd(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN)


# ---------------------------------------------------------------- norms / activations


def test_rms_norm_and_fused_residual():
    norm = RMSNorm(8, eps=1e-6)
    norm.weight.data = rnd(8)
    x, r = rnd(3, 8), rnd(3, 8)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    out, new_res = norm(x, r)
    torch.testing.assert_close(new_res, x + r)
    torch.testing.assert_close(out, norm(x + r))


def test_gemma_norm_scales_by_one_plus_weight_in_float32():
    norm = GemmaRMSNorm(8)
    # w = 0 is the identity scale
    torch.testing.assert_close(norm(torch.ones(2, 8)), torch.ones(2, 8), atol=1e-5, rtol=0)
    norm.weight.data = rnd(8)
    x = rnd(4, 8).to(torch.bfloat16)
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
    expected = (normed * (1 + norm.weight.float())).bfloat16()
    out = norm(x)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)


def test_gated_activations():
    x = rnd(5, 12)
    gate, up = x[:, :6], x[:, 6:]
    torch.testing.assert_close(SiluAndMul()(x), gate * torch.sigmoid(gate) * up)
    tanh_gelu = 0.5 * gate * (1 + torch.tanh(math.sqrt(2 / math.pi) * (gate + 0.044715 * gate**3)))
    torch.testing.assert_close(GeluAndMul()(x), tanh_gelu * up)
    assert isinstance(get_gated_activation("gelu_pytorch_tanh"), GeluAndMul)
    with pytest.raises(ValueError, match="unsupported hidden activation 'relu'"):
        get_gated_activation("relu")


# ---------------------------------------------------------------- linear layers


def _load_ranks(make, loads, tp_size):
    """Build a layer per rank and feed it the same checkpoint tensors (name, tensor, shard)."""
    layers = [make(rank, tp_size) for rank in range(tp_size)]
    for layer in layers:
        for tensor, shard in loads:
            layer.weight.weight_loader(layer.weight, tensor, shard)
    return layers


def test_qkv_shards_per_rank_and_kv_replication():
    hidden, d = 6, 2
    q, k, v = rnd(4 * d, hidden), rnd(2 * d, hidden), rnd(2 * d, hidden)
    loads = [(q, "q"), (k, "k"), (v, "v")]
    (full,) = _load_ranks(lambda r, t: QKVParallelLinear(hidden, d, 4, 2, False, r, t), loads, 1)
    torch.testing.assert_close(full.weight.data, torch.cat([q, k, v]))
    x = rnd(3, hidden)
    torch.testing.assert_close(full(x), x @ torch.cat([q, k, v]).T)

    ranks = _load_ranks(lambda r, t: QKVParallelLinear(hidden, d, 4, 2, False, r, t), loads, 2)
    for r, layer in enumerate(ranks):  # 2 q heads and 1 kv head per rank
        torch.testing.assert_close(layer.weight.data, torch.cat([q[4 * r : 4 * r + 4], k[2 * r : 2 * r + 2],
                                                                 v[2 * r : 2 * r + 2]]))
    ranks = _load_ranks(lambda r, t: QKVParallelLinear(hidden, d, 4, 2, False, r, t), loads, 4)
    for r, layer in enumerate(ranks):  # kv heads replicated on pairs of ranks
        kv = r // 2
        torch.testing.assert_close(layer.weight.data, torch.cat([q[2 * r : 2 * r + 2], k[2 * kv : 2 * kv + 2],
                                                                 v[2 * kv : 2 * kv + 2]]))


def test_merged_column_and_row_parallel_shards():
    gate, up = rnd(8, 3), rnd(8, 3)
    ranks = _load_ranks(lambda r, t: MergedColumnParallelLinear(3, [8, 8], False, r, t),
                        [(gate, 0), (up, 1)], 2)
    for r, layer in enumerate(ranks):
        expected = torch.cat([gate[4 * r : 4 * r + 4], up[4 * r : 4 * r + 4]])
        torch.testing.assert_close(layer.weight.data, expected)
    fused = MergedColumnParallelLinear(3, [8, 8], False)
    fused.weight.weight_loader(fused.weight, torch.cat([gate, up]))  # already-fused checkpoint
    torch.testing.assert_close(fused.weight.data, torch.cat([gate, up]))

    w = rnd(5, 8)
    ranks = _load_ranks(lambda r, t: RowParallelLinear(8, 5, False, r, t), [(w, None)], 2)
    torch.testing.assert_close(torch.cat([layer.weight.data for layer in ranks], dim=1), w)
    with pytest.raises(RuntimeError, match="all_reduce over tp_size=2 needs a process group"):
        ranks[0](rnd(2, 4))
    col = _load_ranks(lambda r, t: ColumnParallelLinear(8, 6, False, r, t), [(rnd(6, 8), None)], 2)
    assert col[1].weight.shape == (3, 8)


def test_bias_and_shape_errors():
    layer = ReplicatedLinear(4, 3, bias=True)
    layer.weight.weight_loader(layer.weight, torch.eye(3, 4))
    layer.bias.weight_loader(layer.bias, torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(layer(torch.ones(1, 4)), torch.tensor([[2.0, 3.0, 4.0]]))
    with pytest.raises(ValueError, match=r"checkpoint has \(3, 5\), model expects \(3, 4\)"):
        layer.weight.weight_loader(layer.weight, torch.zeros(3, 5))
    qkv = QKVParallelLinear(4, 2, 2, 1)
    with pytest.raises(ValueError, match=r"k_proj: checkpoint has \(4, 4\), model expects \(2, 4\)"):
        qkv.weight.weight_loader(qkv.weight, torch.zeros(4, 4), "k")
    with pytest.raises(ValueError, match="not divisible by tp_size=3"):
        ColumnParallelLinear(4, 8, tp_rank=0, tp_size=3)


def test_vocab_parallel_embedding_pads_last_rank():
    table = rnd(7, 4)
    ranks = [VocabParallelEmbedding(7, 4, r, 2) for r in range(2)]
    for e in ranks:
        e.weight.weight_loader(e.weight, table)
    torch.testing.assert_close(ranks[0].weight.data, table[:4])
    torch.testing.assert_close(ranks[1].weight.data[:3], table[4:])
    assert ranks[1].weight.data[3].abs().sum() == 0
    full = VocabParallelEmbedding(7, 4)
    full.weight.weight_loader(full.weight, table)
    torch.testing.assert_close(full(torch.tensor([6, 0])), table[[6, 0]])


# ---------------------------------------------------------------- logits processor


def _fake_batch(mode, lens, starts=None, return_logprob=False):
    start_loc = torch.tensor([sum(lens[:i]) for i in range(len(lens))])
    lens_t = torch.tensor(lens)
    return SimpleNamespace(
        forward_mode=mode, batch_size=len(lens), return_logprob=return_logprob,
        extend_seq_lens_cpu=lens, extend_logprob_start_lens_cpu=starts,
        last_token_indices=lambda: start_loc + lens_t - 1,
    )


def test_logits_rows_selection_and_softcap():
    head = ParallelLMHead(10, 4)
    head.weight.data = rnd(10, 4) * 20
    hidden = rnd(9, 4)
    full = F.linear(hidden, head.weight)
    proc = LogitsProcessor(10)

    out = proc(hidden, head, _fake_batch(ForwardMode.EXTEND, [2, 3, 4]))
    torch.testing.assert_close(out.next_token_logits, full[[1, 4, 8]])
    assert out.input_logits is None

    fb = _fake_batch(ForwardMode.MIXED, [2, 3, 4], starts=[0, 3, 1], return_logprob=True)
    assert input_logit_row_indices(fb) == [0, 1, 6, 7, 8]
    out = proc(hidden, head, fb)
    torch.testing.assert_close(out.input_logits, full[[0, 1, 6, 7, 8]])
    torch.testing.assert_close(out.next_token_logits, full[[1, 4, 8]])

    capping = LogitsProcessor(10, final_logit_softcapping=3.0)
    capped = capping(hidden[:2], head, _fake_batch(ForwardMode.DECODE, [1, 1]))
    torch.testing.assert_close(capped.next_token_logits, 3.0 * torch.tanh(full[:2] / 3.0))
    assert capped.next_token_logits.abs().max() <= 3.0 and full[:2].abs().max() > 3.0
    with pytest.raises(ValueError, match="outside"):
        input_logit_row_indices(_fake_batch(ForwardMode.EXTEND, [2], starts=[3]))
