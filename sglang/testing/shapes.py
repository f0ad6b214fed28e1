"""Real model shapes without weights, for `--load-format dummy` benchmarks.

`write_shape_config("llama-3-8b", dir)` writes config.json with the published dimensions of the
model plus a byte-level BPE tokenizer with exactly `vocab_size` entries (built programmatically:
all byte pairs, then byte triples, so it loads in a second and never emits an id the embedding
lacks). The tokenizer is not the real one; token counts are only roughly realistic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional

import transformers
from tokenizers import Tokenizer, pre_tokenizers

from sglang.testing.tiny_model import arch_spec, config_json_dict, write_generation_config
from sglang.testing.tokenizer_factory import (
    TokenizerFamily,
    TokenizerIds,
    add_family_tokens,
    bpe_from_vocab,
    save_tokenizer,
    tokenizer_family,
    write_json,
)


@dataclass(frozen=True)
class ShapeSpec:
    arch: str  # key of tiny_model.ARCHES; also picks the tokenizer family
    fields: Mapping[str, Any]  # transformers config fields


_LLAMA3_COMMON = {
    "hidden_act": "silu",
    "rms_norm_eps": 1e-5,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}

SHAPES: Mapping[str, ShapeSpec] = MappingProxyType({
    "llama-3-8b": ShapeSpec("llama", MappingProxyType({
        **_LLAMA3_COMMON,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "max_position_embeddings": 8192,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
        "tie_word_embeddings": False,
    })),
    "llama-3.2-1b": ShapeSpec("llama", MappingProxyType({
        **_LLAMA3_COMMON,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "head_dim": 64,
        "max_position_embeddings": 131072,
        "rope_parameters": {
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "tie_word_embeddings": True,
    })),
    "qwen2.5-0.5b": ShapeSpec("qwen2", MappingProxyType({
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "tie_word_embeddings": True,
        "use_sliding_window": False,
    })),
    # Mixture-of-experts shapes (published config.json dimensions).
    "mixtral-8x7b": ShapeSpec("mixtral", MappingProxyType({
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
        "num_local_experts": 8, "num_experts_per_tok": 2, "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "sliding_window": None,
        "tie_word_embeddings": False,
    })),
    "qwen3-30b-a3b": ShapeSpec("qwen3_moe", MappingProxyType({
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "hidden_size": 2048, "intermediate_size": 6144,
        "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32,
        "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936, "num_experts": 128,
        "num_experts_per_tok": 8, "norm_topk_prob": True, "max_position_embeddings": 40960,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "tie_word_embeddings": False,
    })),
    "deepseek-v2-lite": ShapeSpec("deepseek_v2", MappingProxyType({
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "hidden_size": 2048, "intermediate_size": 10944,
        "moe_intermediate_size": 1408, "num_hidden_layers": 27, "num_attention_heads": 16,
        "num_key_value_heads": 16, "vocab_size": 102400, "n_routed_experts": 64, "n_shared_experts": 2,
        "num_experts_per_tok": 6, "first_k_dense_replace": 1, "kv_lora_rank": 512, "q_lora_rank": None,
        "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "topk_method": "greedy",
        "n_group": 1, "topk_group": 1, "routed_scaling_factor": 1.0, "norm_topk_prob": False,
        "max_position_embeddings": 163840, "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                            "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
                            "mscale": 0.707, "mscale_all_dim": 0.707},
    })),
})


def shape_spec(name: str) -> ShapeSpec:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown shape {name!r}; choose one of {sorted(SHAPES)}") from None


def synthetic_bpe(num_entries: int, family: Optional[TokenizerFamily] = None) -> Tokenizer:
    """Byte-level BPE with exactly `num_entries` tokens: 256 bytes, byte pairs, byte triples."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges: list[tuple[str, str]] = []
    pairs = [(a, b) for a in alphabet for b in alphabet]
    capacity = len(alphabet) + len(pairs) * (1 + len(alphabet))
    if not len(alphabet) < num_entries <= capacity:
        raise ValueError(f"synthetic BPE supports {len(alphabet) + 1}..{capacity} entries, got {num_entries}")

    def add(left: str, right: str) -> bool:
        if len(vocab) >= num_entries:
            return False
        vocab[left + right] = len(vocab)
        merges.append((left, right))
        return True

    for a, b in pairs:
        if not add(a, b):
            break
    for a, b in pairs:
        if not all(add(a + b, c) for c in alphabet):
            break
    return bpe_from_vocab(vocab, merges, family)


def _shape_config(spec: ShapeSpec, ids: TokenizerIds) -> transformers.PretrainedConfig:
    arch = arch_spec(spec.arch)
    eos: Any = list(ids.stop_ids) if len(ids.stop_ids) > 1 else ids.eos_id
    return transformers.AutoConfig.for_model(
        arch.model_type, architectures=[arch.architecture], dtype="bfloat16",
        bos_token_id=ids.bos_id, eos_token_id=eos, pad_token_id=ids.pad_id, **dict(spec.fields),
    )


def write_shape_config(name: str, out_dir: str) -> str:
    """Write config.json, generation_config.json and a vocab_size-entry tokenizer; return out_dir."""
    spec = shape_spec(name)
    family = tokenizer_family(arch_spec(spec.arch).tokenizer_family(spec.arch))
    vocab_size = int(spec.fields["vocab_size"])
    tok = synthetic_bpe(vocab_size - len(family.specials), family)
    ids = add_family_tokens(tok, family)
    os.makedirs(out_dir, exist_ok=True)
    save_tokenizer(tok, family, out_dir, model_max_length=int(spec.fields["max_position_embeddings"]))
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(_shape_config(spec, ids)))
    write_generation_config(out_dir, ids)
    return out_dir
