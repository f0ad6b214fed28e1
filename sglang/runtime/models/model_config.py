"""What the runtime needs to know about a checkpoint, read from its config.json (and
generation_config.json for stop tokens), or from a GGUF file's metadata."""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Optional, Set

import torch
from transformers import AutoConfig, PretrainedConfig

from sglang.runtime.layers.rotary_embedding import rope_params_from_config
from sglang.runtime.models.gguf.files import resolve_gguf_file
from sglang.runtime.models.registry import is_supported, unsupported_message
from sglang.runtime.models.transformers_fallback.select import resolve_model_impl

logger = logging.getLogger(__name__)

_DTYPE_NAMES = {
    "float32": torch.float32, "float": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "half": torch.float16, "fp16": torch.float16,
}


def resolve_dtype(dtype: str, hf_config: PretrainedConfig, device: str) -> torch.dtype:
    """'auto' -> float32 on CPU, the checkpoint's own dtype elsewhere (bfloat16 if it names none)."""
    if dtype != "auto":
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; use 'auto' or one of {sorted(_DTYPE_NAMES)}")
        return _DTYPE_NAMES[dtype]
    if device == "cpu":
        return torch.float32
    declared = _declared_dtype(hf_config)
    return declared if declared in (torch.float32, torch.float16, torch.bfloat16) else torch.bfloat16


def _declared_dtype(hf_config: PretrainedConfig) -> Optional[torch.dtype]:
    # transformers 5 calls it `dtype`; older configs (and their json) say `torch_dtype`.
    value = hf_config.__dict__.get("dtype") or hf_config.__dict__.get("torch_dtype")
    if isinstance(value, str):
        return _DTYPE_NAMES.get(value.replace("torch.", ""))
    return value if isinstance(value, torch.dtype) else None


def _as_id_set(value: Any) -> Set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


def read_eos_token_ids(model_path: str, hf_config: PretrainedConfig) -> Set[int]:
    """Stop ids from config.json plus generation_config.json (either may be an int or a list)."""
    ids = _as_id_set(getattr(hf_config, "eos_token_id", None))
    path = os.path.join(model_path, "generation_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            ids |= _as_id_set(json.load(f).get("eos_token_id"))
    return ids


def derived_context_len(hf_config: PretrainedConfig) -> int:
    """Longest sequence the model supports, including a rope-scaling extension."""
    max_pos = int(hf_config.max_position_embeddings)
    _, scaling = rope_params_from_config(hf_config)
    if not scaling:
        return max_pos
    factor = float(scaling.get("factor") or 1.0)
    if scaling["rope_type"] in ("linear", "dynamic"):
        return int(max_pos * factor)
    if scaling["rope_type"] == "yarn":
        return max(max_pos, int(scaling["original_max_position_embeddings"] * factor))
    return max_pos


class ModelConfig:
    def __init__(self, model_path: str, context_length: Optional[int] = None, dtype: str = "auto",
                 trust_remote_code: bool = False, device: str = "cpu", load_format: str = "auto",
                 model_impl: str = "auto"):
        """`model_impl` (--model-impl): 'sglang', 'transformers' or 'auto'; `self.model_impl` is the
        one chosen ('sglang' or 'transformers', see transformers_fallback/select.py)."""
        self.model_path = model_path
        self.device = device
        # A GGUF checkpoint (a .gguf file, or a directory of one with load_format 'gguf') stays
        # open: the loader streams its tensors from the same reader.
        self.gguf_path: Optional[str] = resolve_gguf_file(model_path, load_format)
        self.gguf = None
        if self.gguf_path is not None:
            from sglang.runtime.models.gguf.checkpoint import GGUFCheckpoint
            from sglang.runtime.models.gguf.config import gguf_hf_config

            self.gguf = GGUFCheckpoint(self.gguf_path)
            self.hf_config = gguf_hf_config(self.gguf)
        else:
            self.hf_config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        cfg = self.hf_config
        architectures = getattr(cfg, "architectures", None) or []
        if not architectures:
            raise ValueError(f"{model_path}/config.json has no 'architectures' entry; add e.g. "
                             f"\"architectures\": [\"LlamaForCausalLM\"]")
        self.architecture: str = architectures[0]
        self.model_impl: str = resolve_model_impl(self.architecture, cfg, model_impl)
        # Vision-language configs nest the language model's fields in `text_config`.
        self.hf_text_config = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        self.is_multimodal: bool = self.hf_text_config is not cfg
        cfg = self.hf_text_config
        self.num_hidden_layers: int = cfg.num_hidden_layers
        self.num_attention_heads: int = cfg.num_attention_heads
        self.num_key_value_heads: int = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.hidden_size: int = cfg.hidden_size
        self.head_dim: int = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.vocab_size: int = cfg.vocab_size
        # Latent attention (DeepSeek) caches one vector per token and layer: [kv latent | rope key],
        # read as a single kv head by the attention backends (`layers/mla_attention.py`).
        self.kv_lora_rank: Optional[int] = getattr(cfg, "kv_lora_rank", None)
        if self.kv_lora_rank:
            self.num_key_value_heads = 1
            self.head_dim = self.kv_lora_rank + cfg.qk_rope_head_dim
        self.dtype: torch.dtype = resolve_dtype(dtype, cfg, device)
        self.hf_eos_token_ids: Set[int] = read_eos_token_ids(model_path, self.hf_config) | _as_id_set(
            getattr(cfg, "eos_token_id", None))
        self.sliding_window: Optional[int] = self._sliding_window()
        self.context_len: int = self._context_len(context_length)

    @property
    def is_supported(self) -> bool:
        return is_supported(self.architecture)

    def check_supported(self) -> None:
        if not self.is_supported:
            raise ValueError(unsupported_message(self.architecture))

    def _sliding_window(self) -> Optional[int]:
        if getattr(self.hf_text_config, "use_sliding_window", True) is False:
            return None  # Qwen configs carry a window size they do not use
        return getattr(self.hf_text_config, "sliding_window", None) or None

    def _context_len(self, override: Optional[int]) -> int:
        limit = derived_context_len(self.hf_text_config)
        if override is None:
            return limit
        if override > limit:
            logger.warning("context_length=%d exceeds the model's limit of %d positions; outputs past "
                           "%d may be degraded", override, limit, limit)
        return int(override)

    def __repr__(self) -> str:
        return (f"ModelConfig({self.model_path!r}, arch={self.architecture}, "
                f"layers={self.num_hidden_layers}, "
                f"heads={self.num_attention_heads}/{self.num_key_value_heads}, head_dim={self.head_dim}, "
                f"dtype={self.dtype}, context_len={self.context_len})")
