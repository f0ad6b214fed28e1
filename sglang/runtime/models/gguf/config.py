"""The transformers config a GGUF file's metadata describes.

We map llama.cpp's keys ourselves instead of calling transformers' GGUF config reader: that
reader leaves fields the file does determine at the config class's defaults (Gemma 2's attention
scale and soft-capping, Llama 3's rope scaling), and parses every metadata array (seconds on a
49k-token vocabulary)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from transformers import AutoConfig, PretrainedConfig

from sglang.runtime.models.gguf.archs import GGUFArch, select_arch
from sglang.runtime.models.gguf.checkpoint import GGUFCheckpoint
from sglang.runtime.models.gguf.rope_freqs import llama3_scaling_from_divisors, rope_divisors

DEFAULT_ROPE_THETA = 10000.0  # llama.cpp's default when a file states no rope.freq_base
# Tokens that end generation (llama.cpp's end-of-generation set): the ids these keys name, plus
# control tokens spelled like a known end-of-turn token.
_STOP_ID_KEYS = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
_STOP_TEXTS = frozenset(("<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                         "<|end_of_text|>", "<EOT>", "_<EOT>", "<end_of_utterance>"))
_CONTROL_TOKEN = 3  # tokenizer.ggml.token_type of special (control) tokens


def _uniform(ckpt: GGUFCheckpoint, key: str, default: Any = None) -> Any:
    """A per-model value that some files store per layer: the one value all layers share."""
    value = ckpt.arch_get(key, default)
    if isinstance(value, list):
        if len(set(value)) != 1:
            raise ValueError(f"GGUF key {ckpt.architecture}.{key} varies across layers ({value[:8]}...); "
                             f"per-layer shapes are not supported")
        return value[0]
    return value


def _rope_scaling(ckpt: GGUFCheckpoint, base: float, rotary_dim: int) -> Optional[Dict[str, Any]]:
    kind = ckpt.arch_get("rope.scaling.type", None)
    factor = ckpt.arch_get("rope.scaling.factor", None) or ckpt.arch_get("rope.scale_linear", None)
    if kind in (None, "none") and factor and float(factor) != 1.0:
        kind = "linear"  # files older than rope.scaling.type stored only rope.scale_linear
    if kind in (None, "none"):
        divisors = rope_divisors(ckpt)
        return None if divisors is None else llama3_scaling_from_divisors(divisors, base, rotary_dim)
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "yarn":
        scaling = {"rope_type": "yarn", "factor": float(factor),
                   "original_max_position_embeddings": int(ckpt.arch_get("rope.scaling.original_context_length"))}
        for ours, theirs in (("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow")):
            value = ckpt.arch_get(f"rope.scaling.{theirs}", None)
            if value is not None:
                scaling[ours] = float(value)
        return scaling
    raise ValueError(f"GGUF rope scaling type {kind!r} ({ckpt.path}) is not supported; supported: none, linear, "
                     f"yarn, and Llama 3's rope_freqs tensor")


def _rope_fields(ckpt: GGUFCheckpoint, head_dim: int) -> Dict[str, Any]:
    base = ckpt.arch_float("rope.freq_base", DEFAULT_ROPE_THETA)
    rotary_dim = int(ckpt.arch_get("rope.dimension_count", head_dim))
    fields: Dict[str, Any] = {"rope_theta": base, "rope_scaling": _rope_scaling(ckpt, base, rotary_dim)}
    if rotary_dim != head_dim:
        fields["partial_rotary_factor"] = rotary_dim / head_dim
    return fields


def _stop_ids(ckpt: GGUFCheckpoint) -> List[int]:
    stop = [int(v) for v in (ckpt.get(key, None) for key in _STOP_ID_KEYS) if v is not None]
    tokens, types = ckpt.get("tokenizer.ggml.tokens", []), ckpt.get("tokenizer.ggml.token_type", [])
    stop += [i for i, (text, kind) in enumerate(zip(tokens, types)) if kind == _CONTROL_TOKEN and text in _STOP_TEXTS]
    return sorted(set(stop), key=stop.index)  # first-seen order: the file's EOS first


def _token_ids(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    stop = _stop_ids(ckpt)
    return {
        "bos_token_id": ckpt.get("tokenizer.ggml.bos_token_id", None),
        "eos_token_id": stop[0] if len(stop) == 1 else (stop or None),
        "pad_token_id": ckpt.get("tokenizer.ggml.padding_token_id", None),
    }


def _shape_fields(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    hidden = int(ckpt.arch_get("embedding_length"))
    heads = int(_uniform(ckpt, "attention.head_count"))
    head_dim = int(ckpt.arch_get("attention.key_length", hidden // heads))
    if not ckpt.has_tensor("token_embd.weight"):
        raise ValueError(f"GGUF file {ckpt.path!r} has no token_embd.weight tensor")
    return {
        "vocab_size": int(ckpt.logical_shape("token_embd.weight")[0]),
        "hidden_size": hidden,
        "intermediate_size": int(_uniform(ckpt, "feed_forward_length")),
        "num_hidden_layers": int(ckpt.arch_get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_uniform(ckpt, "attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "max_position_embeddings": int(ckpt.arch_get("context_length")),
        "rms_norm_eps": ckpt.arch_float("attention.layer_norm_rms_epsilon"),
        # llama.cpp writes the output projection only when it is not the embedding matrix.
        "tie_word_embeddings": not ckpt.has_tensor("output.weight"),
        **_rope_fields(ckpt, head_dim),
    }


def gguf_config_fields(ckpt: GGUFCheckpoint, arch: GGUFArch) -> Dict[str, Any]:
    fields = {**_shape_fields(ckpt), **_token_ids(ckpt), **arch.config_extras(ckpt)}
    dtype = ckpt.float_dtype_name()
    if dtype is not None:
        fields["dtype"] = dtype
    return fields


def gguf_hf_config(ckpt: GGUFCheckpoint) -> PretrainedConfig:
    """The config of the model in `ckpt`; raises naming an unsupported architecture."""
    arch = select_arch(ckpt)
    fields = gguf_config_fields(ckpt, arch)
    config = AutoConfig.for_model(arch.model_type, architectures=[arch.architecture], **fields)
    config.name_or_path = ckpt.path
    return config
