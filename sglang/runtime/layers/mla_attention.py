"""Multi-head latent attention (DeepSeek-V2 / V3), computed on the compressed KV cache.

Per token the model projects hidden states to a KV latent `c` (kv_lora_rank, RMS-normed) and one
shared rope key `k_pe` (qk_rope_head_dim); keys and values of head h would be
`k_h = [W_UK_h c | k_pe]`, `v_h = W_UV_h c` with W_UK/W_UV the two halves of `kv_b_proj`.
Instead of expanding them, the up-projections are absorbed into the query and the output:

    score_h(t, s) = (W_UK_h^T q_nope_h(t)) . c(s) + q_pe_h(t) . k_pe(s)
    out_h(t)      = W_UV_h (sum_s p_h(t, s) c(s))

which is multi-query attention with one kv head of width kv_lora_rank + qk_rope_head_dim whose
value is the same vector. The cache therefore stores `[c | k_pe]` per token and layer, and
`MLAKVPool` lets the value buffer alias the key buffer. Extend and decode take the same path
through the attention backends (the attention output's rope columns are dropped).

DeepSeek lays rope dims out in interleaved pairs; de-interleaving q_pe and k_pe the same way
turns that into the half-split rotation our rotary embedding computes, and leaves dot products
unchanged.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.attention.radix_attention import RadixAttention
from sglang.runtime.layers.layernorm import RMSNorm
from sglang.runtime.layers.linear import ColumnParallelLinear, ReplicatedLinear, RowParallelLinear
from sglang.runtime.layers.rotary_embedding import RotaryEmbedding, get_rope, rope_params_from_config

# transformers' DeepSeek q_a / kv_a norms use this eps, not config.rms_norm_eps.
LATENT_NORM_EPS = 1e-6


def deinterleave(x: torch.Tensor) -> torch.Tensor:
    """[..., d] pairs (x0, x1), (x2, x3), ... -> [x0, x2, ..., x1, x3, ...]."""
    return x.unflatten(-1, (-1, 2)).transpose(-1, -2).flatten(-2)


def mla_softmax_scale(config: PretrainedConfig) -> float:
    """1/sqrt(qk head dim), times YaRN's mscale(factor, mscale_all_dim)^2 when set."""
    scale = (config.qk_nope_head_dim + config.qk_rope_head_dim) ** -0.5
    _, scaling = rope_params_from_config(config)
    if scaling and scaling.get("rope_type") == "yarn" and scaling.get("mscale_all_dim"):
        factor = float(scaling["factor"])
        mscale = 0.1 * float(scaling["mscale_all_dim"]) * math.log(factor) + 1.0 if factor > 1 else 1.0
        scale *= mscale * mscale
    return scale


def mla_rope(config: PretrainedConfig) -> RotaryEmbedding:
    base, scaling = rope_params_from_config(config)
    dim = config.qk_rope_head_dim
    return get_rope(dim, dim, config.max_position_embeddings, base, scaling)


class MLAAttention(nn.Module):
    def __init__(self, config: PretrainedConfig, layer_id: int, rotary_emb: Optional[RotaryEmbedding] = None,
                 interleaved_rope: bool = True):
        super().__init__()
        hidden, heads = config.hidden_size, config.num_attention_heads
        self.nope_dim, self.rope_dim = config.qk_nope_head_dim, config.qk_rope_head_dim
        self.v_dim, self.kv_lora_rank = config.v_head_dim, config.kv_lora_rank
        self.q_lora_rank = getattr(config, "q_lora_rank", None)
        bias = bool(getattr(config, "attention_bias", False))
        qk_dim = self.nope_dim + self.rope_dim
        if self.q_lora_rank:
            self.q_a_proj = ReplicatedLinear(hidden, self.q_lora_rank, bias=bias)
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, eps=LATENT_NORM_EPS)
            self.q_b_proj = ColumnParallelLinear(self.q_lora_rank, heads * qk_dim, bias=False)
            self.num_heads = self.q_b_proj.out_features // qk_dim
        else:
            self.q_proj = ColumnParallelLinear(hidden, heads * qk_dim, bias=False)
            self.num_heads = self.q_proj.out_features // qk_dim
        self.kv_a_proj_with_mqa = ReplicatedLinear(hidden, self.kv_lora_rank + self.rope_dim, bias=bias)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank, eps=LATENT_NORM_EPS)
        self.kv_b_proj = ColumnParallelLinear(self.kv_lora_rank, heads * (self.nope_dim + self.v_dim), bias=False)
        self.kv_b_proj.float_after_load = True  # its weight is absorbed, read directly (FP8 checkpoints: dequantized)
        self.o_proj = RowParallelLinear(heads * self.v_dim, hidden, bias=bias)
        fits = rotary_emb is not None and rotary_emb.head_size == self.rope_dim
        self.rotary_emb = rotary_emb if fits else mla_rope(config)
        self.interleaved_rope = interleaved_rope
        latent = self.kv_lora_rank + self.rope_dim
        # One kv head whose value is the key itself (the output's rope columns are dropped).
        self.attn = RadixAttention(self.num_heads, latent, mla_softmax_scale(config), 1, layer_id)

    def _queries(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.q_lora_rank:
            return self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden_states)))
        return self.q_proj(hidden_states)

    def _up_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_UK [heads, nope, lora], W_UV [heads, v, lora]) of this rank's heads (views)."""
        w = self.kv_b_proj.weight.view(self.num_heads, self.nope_dim + self.v_dim, self.kv_lora_rank)
        return w[:, : self.nope_dim], w[:, self.nope_dim:]

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, forward_batch) -> torch.Tensor:
        tokens = hidden_states.shape[0]
        q = self._queries(hidden_states).view(tokens, self.num_heads, self.nope_dim + self.rope_dim)
        q_nope, q_pe = q.split([self.nope_dim, self.rope_dim], dim=-1)
        latent, k_pe = self.kv_a_proj_with_mqa(hidden_states).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        latent = self.kv_a_layernorm(latent.contiguous())
        if self.interleaved_rope:
            q_pe, k_pe = deinterleave(q_pe), deinterleave(k_pe)
        q_pe, k_pe = self.rotary_emb(positions, q_pe.reshape(tokens, -1), k_pe.reshape(tokens, -1))
        w_uk, w_uv = self._up_projections()
        q_latent = torch.einsum("thn,hnl->thl", q_nope, w_uk)
        query = torch.cat([q_latent, q_pe.view(tokens, self.num_heads, self.rope_dim)], dim=-1)
        key = torch.cat([latent, k_pe.view(tokens, self.rope_dim)], dim=-1)
        out = self.attn(query.reshape(tokens, -1), key, key, forward_batch)
        out = out.view(tokens, self.num_heads, -1)[..., : self.kv_lora_rank]
        return self.o_proj(torch.einsum("thl,hvl->thv", out, w_uv).reshape(tokens, -1))
