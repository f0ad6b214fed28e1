"""What differs per GGUF architecture: the HF model it is, its tensor names, the transforms
llama.cpp's converter applied to the weights, and config fields only that architecture has.

Facts from llama.cpp's converter (convert_hf_to_gguf.py) and loader, undone here:
- llama (and Mistral, which llama.cpp writes as 'llama'): q/k rows are reordered per head from
  the rotate-half layout to interleaved pairs (llama.cpp rotates adjacent pairs), q and k alike,
  weight and bias; k with the KV head count.
- qwen2 / qwen3 / gemma2: rotate-half rope in llama.cpp too, no reordering.
- gemma2: every `*norm.weight` is stored as 1 + w (llama.cpp's RMSNorm multiplies by the weight,
  Gemma's by 1 + weight); lm_head is never written (tied embeddings).
- gemma2: the attention scale is 1/sqrt(head_dim) except for the 27B model (46 layers), where it
  is 1/sqrt(hidden / heads); the file does not store it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping

from sglang.runtime.models.gguf.checkpoint import GGUFCheckpoint

ConfigExtras = Callable[[GGUFCheckpoint], Dict[str, Any]]

# GGUF tensor names outside the blocks -> our module paths.
GLOBAL_NAMES: Mapping[str, str] = MappingProxyType({
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
})

_ATTENTION_AND_MLP = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LLAMA_BLOCK = MappingProxyType({**_ATTENTION_AND_MLP, "ffn_norm": "post_attention_layernorm"})
_QWEN3_BLOCK = MappingProxyType({**_LLAMA_BLOCK, "attn_q_norm": "self_attn.q_norm",
                                 "attn_k_norm": "self_attn.k_norm"})
# Gemma 2 norms around both sublayers: llama.cpp's ffn_norm is the pre-feed-forward one.
_GEMMA2_BLOCK = MappingProxyType({
    **_ATTENTION_AND_MLP,
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
})


def _no_extras(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    return {}


@dataclass(frozen=True)
class GGUFArch:
    gguf_name: str  # general.architecture
    model_type: str  # transformers model_type
    architecture: str  # our registry / transformers class name
    block_names: Mapping[str, str]  # blk.N.<leaf> -> model.layers.N.<path>
    permute_qk: bool = False  # undo llama.cpp's interleaved q/k rows
    norm_offset: float = 0.0  # stored norm weight = ours + norm_offset
    config_extras: ConfigExtras = field(default=_no_extras)


def _has_bias(ckpt: GGUFCheckpoint, leaf: str) -> bool:
    return ckpt.has_tensor(f"blk.0.{leaf}.bias")


def _llama_extras(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    return {"attention_bias": _has_bias(ckpt, "attn_q"), "mlp_bias": _has_bias(ckpt, "ffn_up")}


def _mistral_extras(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    # llama.cpp's converter drops Mistral's window; a file that states one keeps it.
    return {"sliding_window": ckpt.arch_get("attention.sliding_window", None)}


def _qwen2_extras(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    # llama.cpp runs Qwen 2/3 with full attention on every layer; so do we.
    return {"use_sliding_window": False, "sliding_window": None}


def _qwen3_extras(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    return {**_qwen2_extras(ckpt), "attention_bias": _has_bias(ckpt, "attn_q")}


def _gemma2_extras(ckpt: GGUFCheckpoint) -> Dict[str, Any]:
    layers = int(ckpt.arch_get("block_count"))
    hidden, heads = int(ckpt.arch_get("embedding_length")), int(ckpt.arch_get("attention.head_count"))
    head_dim = int(ckpt.arch_get("attention.key_length", hidden // heads))
    return {
        "query_pre_attn_scalar": hidden // heads if layers == 46 else head_dim,
        "attn_logit_softcapping": ckpt.arch_float("attn_logit_softcapping", None),
        "final_logit_softcapping": ckpt.arch_float("final_logit_softcapping", None),
        "sliding_window": ckpt.arch_get("attention.sliding_window", None),
        # llama.cpp's Gemma 2 slides on even layers, as transformers' default does.
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
        "hidden_activation": "gelu_pytorch_tanh",
    }


LLAMA = GGUFArch("llama", "llama", "LlamaForCausalLM", _LLAMA_BLOCK, permute_qk=True,
                 config_extras=_llama_extras)
MISTRAL = GGUFArch("llama", "mistral", "MistralForCausalLM", _LLAMA_BLOCK, permute_qk=True,
                   config_extras=_mistral_extras)
QWEN2 = GGUFArch("qwen2", "qwen2", "Qwen2ForCausalLM", _LLAMA_BLOCK, config_extras=_qwen2_extras)
QWEN3 = GGUFArch("qwen3", "qwen3", "Qwen3ForCausalLM", _QWEN3_BLOCK, config_extras=_qwen3_extras)
GEMMA2 = GGUFArch("gemma2", "gemma2", "Gemma2ForCausalLM", _GEMMA2_BLOCK, norm_offset=1.0,
                  config_extras=_gemma2_extras)

GGUF_ARCHS: Mapping[str, GGUFArch] = MappingProxyType({a.gguf_name: a for a in (LLAMA, QWEN2, QWEN3, GEMMA2)})


def supported_gguf_architectures() -> list:
    return sorted(GGUF_ARCHS)


def select_arch(ckpt: GGUFCheckpoint) -> GGUFArch:
    """The spec for `ckpt`; raises naming the architecture and the supported ones."""
    arch = ckpt.architecture
    if arch not in GGUF_ARCHS:
        raise ValueError(f"GGUF architecture {arch!r} ({ckpt.path}) is not supported; supported GGUF "
                         f"architectures: {', '.join(supported_gguf_architectures())}")
    experts = int(ckpt.arch_get("expert_count", 0) or 0)
    if experts:
        raise ValueError(f"GGUF file {ckpt.path!r} is a mixture-of-experts {arch!r} model ({experts} experts, "
                         f"e.g. Mixtral); only dense {', '.join(supported_gguf_architectures())} models are "
                         f"supported")
    if arch == "llama" and _names_mistral(ckpt):
        return MISTRAL  # llama.cpp writes Mistral as 'llama'; only the name tells them apart
    return GGUF_ARCHS[arch]


def _names_mistral(ckpt: GGUFCheckpoint) -> bool:
    text = " ".join(str(ckpt.get(key, "") or "") for key in ("general.name", "general.basename"))
    return "mistral" in text.lower()
