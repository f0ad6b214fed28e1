"""Llama 2 / 3 / 3.1 / 3.2 and the shared decoder building blocks other families reuse.

Families differ only in small ways, expressed as overridable hooks rather than copies:
`LlamaDecoderLayer.attention_options` (biases, sliding window per layer), `attention_class`
(e.g. Qwen3's per-head q/k norms), and the model/layer classes a CausalLM assembles.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.layers import cpu_decode_step
from sglang.runtime.layers.activation import get_gated_activation
from sglang.runtime.layers.attention.radix_attention import RadixAttention
from sglang.runtime.layers.layernorm import RMSNorm
from sglang.runtime.layers.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from sglang.runtime.layers.logits_processor import LogitsProcessor, LogitsProcessorOutput
from sglang.runtime.layers.rotary_embedding import (
    RotaryEmbedding,
    get_rope,
    rope_params_from_config,
    rotary_dim_from_config,
)
from sglang.runtime.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.weight_utils import StackedMapping, load_named_weights

# Separate q/k/v and gate/up checkpoint tensors land in fused parameters.
STACKED_PARAMS: StackedMapping = (
    (".qkv_proj", ".q_proj", "q"),
    (".qkv_proj", ".k_proj", "k"),
    (".qkv_proj", ".v_proj", "v"),
    (".gate_up_proj", ".gate_proj", 0),
    (".gate_up_proj", ".up_proj", 1),
)


# Rotary buffers some checkpoints carry; we recompute them.
ROTARY_BUFFERS = ("rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached")


def head_dim_of(config: PretrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def num_kv_heads_of(config: PretrainedConfig) -> int:
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def layer_sliding_window(config: PretrainedConfig, layer_id: int,
                         fallback: Callable[[int], bool]) -> Optional[int]:
    """config.sliding_window if layer `layer_id` is a sliding layer, else None.

    Which layers slide comes from `config.layer_types` when present, else `fallback(layer_id)`."""
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    sliding = layer_types[layer_id] == "sliding_attention" if layer_types else fallback(layer_id)
    return int(window) if sliding else None


def rope_for_config(config: PretrainedConfig) -> RotaryEmbedding:
    head_dim = head_dim_of(config)
    base, scaling = rope_params_from_config(config)
    return get_rope(head_dim, rotary_dim_from_config(config, head_dim), config.max_position_embeddings,
                    base, scaling)


class LlamaMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, bias: bool = False):
        super().__init__()
        self.gate_up_proj = MergedColumnParallelLinear(hidden_size, [intermediate_size] * 2, bias=bias)
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, bias=bias)
        self.act_fn = get_gated_activation(hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_up_proj(x)))


class LlamaAttention(nn.Module):
    def __init__(self, config: PretrainedConfig, layer_id: int, rotary_emb: RotaryEmbedding,
                 qkv_bias: bool = False, o_bias: bool = False, scaling: Optional[float] = None,
                 logit_cap: float = 0.0, sliding_window: Optional[int] = None):
        super().__init__()
        self.head_dim = head_dim_of(config)
        num_heads, num_kv_heads = config.num_attention_heads, num_kv_heads_of(config)
        self.qkv_proj = QKVParallelLinear(config.hidden_size, self.head_dim, num_heads, num_kv_heads,
                                          bias=qkv_bias)
        self.o_proj = RowParallelLinear(num_heads * self.head_dim, config.hidden_size, bias=o_bias)
        self.q_size, self.kv_size = self.qkv_proj.q_size, self.qkv_proj.kv_size
        self.rotary_emb = rotary_emb  # shared by all layers of the model
        self.attn = RadixAttention(
            self.qkv_proj.num_heads, self.head_dim,
            scaling if scaling is not None else self.head_dim**-0.5,
            self.qkv_proj.num_kv_heads, layer_id, logit_cap=logit_cap, sliding_window_size=sliding_window,
        )

    def transform_qk(self, q: torch.Tensor, k: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hook applied to q/k before rotary (identity for Llama)."""
        return q, k

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor,
                forward_batch: ForwardBatch) -> torch.Tensor:
        return self.o_proj(self.attend(positions, self.qkv_proj(hidden_states), forward_batch))

    def attend(self, positions: torch.Tensor, qkv: torch.Tensor, forward_batch: ForwardBatch) -> torch.Tensor:
        """Attention output [tokens, heads * head_dim] (before o_proj) for the projected q|k|v."""
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q, k = self.transform_qk(q, k)
        # Rotary and this step's KV write are one kernel on CUDA, so attention must not store again.
        # q/k/v stay strided views of the qkv output: the pool holds v now and every backend
        # reads the new tokens' k/v through their strides.
        q, k = self.rotary_emb.forward_and_store_kv(positions, q, k, v, forward_batch.kv_pool,
                                                    self.attn.layer_id, forward_batch.out_cache_loc)
        return self.attn(q, k, v, forward_batch, save_kv_cache=False)


class LlamaDecoderLayer(nn.Module):
    attention_class = LlamaAttention

    def __init__(self, config: PretrainedConfig, layer_id: int, rotary_emb: RotaryEmbedding):
        super().__init__()
        self.self_attn = self.attention_class(config, layer_id, rotary_emb,
                                              **self.attention_options(config, layer_id))
        self.mlp = self.build_mlp(config, layer_id)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    @staticmethod
    def attention_options(config: PretrainedConfig, layer_id: int) -> Dict[str, Any]:
        bias = bool(getattr(config, "attention_bias", False))
        return {"qkv_bias": bias, "o_bias": bias}

    def build_mlp(self, config: PretrainedConfig, layer_id: int) -> nn.Module:
        """The feed-forward block of layer `layer_id` (mixture-of-experts families override)."""
        return LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act,
                        bias=bool(getattr(config, "mlp_bias", False)))

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, forward_batch: ForwardBatch,
                residual: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        hidden_states = self.self_attn(positions, hidden_states, forward_batch)
        hidden_states, residual = self.post_attention_layernorm(hidden_states, residual)
        return self.mlp(hidden_states), residual

    def forward_one_token(self, positions: torch.Tensor, forward_batch: ForwardBatch,
                          residual: torch.Tensor) -> torch.Tensor:
        """This layer for a one-token step on fused GEMVs (see `one_token_gemv`). `residual` [1, H]
        is the whole stream: each norm runs inside the GEMV after it, each residual add inside the
        GEMV before it, and the stream is updated in place (and returned)."""
        from sglang.kernels.gemv import gemv

        attn, mlp = self.self_attn, self.mlp
        qkv = gemv(residual, attn.qkv_proj.weight, attn.qkv_proj.bias,
                   norm_weight=self.input_layernorm.weight, eps=self.input_layernorm.variance_epsilon)
        gemv(attn.attend(positions, qkv, forward_batch), attn.o_proj.weight, attn.o_proj.bias, residual=residual)
        gate_up = gemv(residual, mlp.gate_up_proj.weight, mlp.gate_up_proj.bias,
                       norm_weight=self.post_attention_layernorm.weight,
                       eps=self.post_attention_layernorm.variance_epsilon)
        return gemv(gate_up, mlp.down_proj.weight, mlp.down_proj.bias, silu_mul=True, residual=residual)


class LlamaModel(nn.Module):
    decoder_layer_class = LlamaDecoderLayer

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        # Set by `one_token_gemv.apply_one_token_gemv` (--enable-fused-gemv): one-token steps take
        # fused GEMVs.
        self.one_token_gemv = False
        # Set by `cpu_kernels.apply_cpu_kernels`: decode steps run each layer as direct C++ calls
        # (`layers/cpu_decode_step.py`).
        self.cpu_decode_steps = None
        # Set by `speculative.eagle_features.attach_feature_store` (EAGLE): every pass stores its
        # tokens' features by KV slot for the draft head.
        self.feature_store = None
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size)
        rotary_emb = rope_for_config(config)
        self.layers = nn.ModuleList(
            self.decoder_layer_class(config, i, rotary_emb) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings as the first layer sees them (families that scale them override)."""
        return self.embed_tokens(input_ids)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`input_embeds` replaces the embedding of `input_ids` (vision-language models pass text
        embeddings with image rows written in)."""
        hidden_states = self.embed(input_ids) if input_embeds is None else input_embeds
        residual = None
        taps = self.feature_store.layer_ids if self.feature_store is not None else ()
        tapped = {}  # EAGLE: the residual stream entering each tapped layer
        if self.one_token_gemv and input_ids.shape[0] == 1:
            for i, layer in enumerate(self.layers):
                if i in taps:
                    tapped[i] = hidden_states.clone()  # the stream is updated in place
                hidden_states = layer.forward_one_token(positions, forward_batch, hidden_states)
            hidden_states = self.norm(hidden_states)
        else:
            serves = cpu_decode_step.serves(self.cpu_decode_steps, forward_batch, hidden_states)
            for i, step in enumerate(self.cpu_decode_steps if serves else self.layers):
                if i in taps:
                    # a copy: the first layer's norm may run in place on the embedding (CPU kernels)
                    tapped[i] = hidden_states.clone() if residual is None else hidden_states + residual
                hidden_states, residual = step(positions, hidden_states, forward_batch, residual)
            hidden_states, _ = self.norm(hidden_states, residual)
        if self.feature_store is not None:
            self.feature_store.write(forward_batch.out_cache_loc, [tapped[i] for i in taps] or [hidden_states])
        return hidden_states


class LlamaForCausalLM(nn.Module):
    model_class = LlamaModel
    stacked_params: StackedMapping = STACKED_PARAMS

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self.model = self.model_class(config)
        self.tie_word_embeddings = bool(getattr(config, "tie_word_embeddings", False))
        if self.tie_word_embeddings:
            self.lm_head = self.model.embed_tokens  # one parameter, listed once
        else:
            self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size)
        self.logits_processor = LogitsProcessor(config.vocab_size, self.final_logit_softcapping())

    def final_logit_softcapping(self) -> Optional[float]:
        return None

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: Optional[torch.Tensor] = None) -> LogitsProcessorOutput:
        hidden_states = self.model(input_ids, positions, forward_batch, input_embeds=input_embeds)
        return self.logits_processor(hidden_states, self.lm_head, forward_batch)

    def skip_weight(self, name: str) -> bool:
        """Checkpoint tensors to ignore: rotary buffers, and the tied copy of the embedding."""
        if any(buf in name for buf in ROTARY_BUFFERS):
            return True
        return self.tie_word_embeddings and name == "lm_head.weight"

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        load_named_weights(self, weights, self.stacked_params, skip=self.skip_weight)
