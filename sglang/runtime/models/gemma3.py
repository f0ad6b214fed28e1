"""Gemma 3 (text): Gemma 2's blocks with three differences.

- q and k are RMS-normalised per head (Gemma's (1 + w) norm) before rotary;
- sliding ("local") and global layers rotate with different bases: `rope_parameters` holds one set
  per layer type in transformers 5 (older configs: `rope_local_base_freq` for local layers,
  `rope_theta` + `rope_scaling` for global ones);
- no attention soft-capping by default and often no final soft-capping (both still honoured when
  a config sets them).

Which layers slide comes from `config.layer_types` (transformers derives it from the older
`sliding_window_pattern`: every sixth layer global).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Dict, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers.layernorm import GemmaRMSNorm
from sglang.runtime.layers.rotary_embedding import get_rope, rope_params_from_config, rotary_dim_from_config
from sglang.runtime.layers.vocab_parallel_embedding import VocabParallelEmbedding
from sglang.runtime.models.gemma2 import Gemma2DecoderLayer, Gemma2ForCausalLM, Gemma2Model, _hidden_act
from sglang.runtime.models.llama import LlamaAttention, LlamaMLP, RotaryEmbedding, head_dim_of

SLIDING, GLOBAL = "sliding_attention", "full_attention"
_DEFAULT_THETA = {SLIDING: 10_000.0, GLOBAL: 1_000_000.0}


def layer_types_of(config: PretrainedConfig) -> list:
    types = getattr(config, "layer_types", None)
    if not types:
        pattern = int(getattr(config, "sliding_window_pattern", 6) or 6)
        types = [SLIDING if (i + 1) % pattern else GLOBAL for i in range(config.num_hidden_layers)]
    unknown = sorted(set(types) - {SLIDING, GLOBAL})
    if unknown or len(types) != config.num_hidden_layers:
        raise ValueError(f"config.layer_types must list {config.num_hidden_layers} entries of {SLIDING!r} or "
                         f"{GLOBAL!r}, got {list(types)}")
    return list(types)


def rope_parameters_for(config: PretrainedConfig, layer_type: str) -> Dict[str, Any]:
    """The rope parameters of one layer type, in transformers 5's form (rope_type, rope_theta, ...)."""
    params = getattr(config, "rope_parameters", None) or {}
    if isinstance(params.get(layer_type), dict):
        return dict(params[layer_type])
    if layer_type == SLIDING:  # older configs
        return {"rope_type": "default",
                "rope_theta": getattr(config, "rope_local_base_freq", None) or _DEFAULT_THETA[SLIDING]}
    scaling = dict(getattr(config, "rope_scaling", None) or {})
    return {"rope_type": "default", **scaling,
            "rope_theta": getattr(config, "rope_theta", None) or _DEFAULT_THETA[GLOBAL]}


def rope_for_layer_type(config: PretrainedConfig, layer_type: str) -> RotaryEmbedding:
    head_dim = head_dim_of(config)
    view = SimpleNamespace(rope_parameters=rope_parameters_for(config, layer_type),
                           max_position_embeddings=config.max_position_embeddings)
    base, scaling = rope_params_from_config(view)
    max_position = config.max_position_embeddings
    if scaling and scaling["rope_type"] == "linear":
        # Gemma 3's max_position_embeddings already counts the stretched positions; the table
        # (sized max_position * factor for linear scaling) need not be `factor` times longer.
        max_position = max(int(max_position / float(scaling["factor"])), 1)
    return get_rope(head_dim, rotary_dim_from_config(config, head_dim), max_position, base, scaling)


class Gemma3Attention(LlamaAttention):
    def __init__(self, config: PretrainedConfig, layer_id: int, *args: Any, **kwargs: Any):
        super().__init__(config, layer_id, *args, **kwargs)
        self.q_norm = GemmaRMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = GemmaRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def _per_head(self, x: torch.Tensor, norm: GemmaRMSNorm) -> torch.Tensor:
        return norm(x.reshape(-1, self.head_dim)).view(x.shape)

    def transform_qk(self, q: torch.Tensor, k: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self._per_head(q, self.q_norm), self._per_head(k, self.k_norm)


class Gemma3DecoderLayer(Gemma2DecoderLayer):
    def __init__(self, config: PretrainedConfig, layer_id: int, rotary_emb: RotaryEmbedding):
        nn.Module.__init__(self)
        bias = bool(getattr(config, "attention_bias", False))
        sliding = layer_types_of(config)[layer_id] == SLIDING
        self.self_attn = Gemma3Attention(
            config, layer_id, rotary_emb, qkv_bias=bias, o_bias=bias,
            scaling=config.query_pre_attn_scalar**-0.5,
            logit_cap=getattr(config, "attn_logit_softcapping", None) or 0.0,
            sliding_window=int(config.sliding_window) if sliding and config.sliding_window else None,
        )
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, _hidden_act(config))
        eps = config.rms_norm_eps
        self.input_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)
        self.post_attention_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)
        self.post_feedforward_layernorm = GemmaRMSNorm(config.hidden_size, eps=eps)


class Gemma3Model(Gemma2Model):
    decoder_layer_class = Gemma3DecoderLayer

    def __init__(self, config: PretrainedConfig):
        if getattr(config, "use_bidirectional_attention", False):
            raise ValueError("Gemma 3 with use_bidirectional_attention (an embedding model) is not supported; "
                             "serve a causal Gemma 3 checkpoint")
        nn.Module.__init__(self)
        # Gemma's norms and q/k norms keep the fused one-token and CPU decode-step paths off.
        self.one_token_gemv = False
        self.cpu_decode_steps = None
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size)
        types = layer_types_of(config)
        # One rotary table per layer type, shared by the layers of that type.
        ropes = {t: rope_for_layer_type(config, t) for t in sorted(set(types))}
        self.layers = nn.ModuleList(self.decoder_layer_class(config, i, ropes[t]) for i, t in enumerate(types))
        self.norm = GemmaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        scale = torch.tensor(float(config.hidden_size) ** 0.5, dtype=torch.float32)
        self.register_buffer("embed_scale", scale.to(torch.get_default_dtype()), persistent=False)


class Gemma3ForCausalLM(Gemma2ForCausalLM):  # final soft-capping only when the config sets it
    model_class = Gemma3Model
