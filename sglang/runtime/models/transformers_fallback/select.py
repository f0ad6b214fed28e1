"""Which implementation serves a checkpoint: ours, or transformers' modeling code (`--model-impl`)."""

from __future__ import annotations

import logging
from typing import Any, Optional

from transformers import PretrainedConfig

from sglang.runtime.models.registry import is_supported, supported_architectures, unsupported_message
from sglang.runtime.server_args import MODEL_IMPLS

logger = logging.getLogger(__name__)

_HINT = "--model-impl transformers (Engine(model_impl='transformers'))"


def transformers_class(architecture: str) -> Optional[type]:
    """transformers' causal-LM class named `architecture`, or None when it has none."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = {n for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for n in ((v,) if isinstance(v, str) else v)}
    return getattr(transformers, architecture, None) if architecture in names else None


def _uses_alibi(config: PretrainedConfig) -> bool:
    attn_config = getattr(config, "attn_config", None)  # MPT nests it
    nested = attn_config.get("alibi") if isinstance(attn_config, dict) else getattr(attn_config, "alibi", False)
    return bool(getattr(config, "alibi", False) or nested or config.model_type == "bloom")


def fallback_refusal(architecture: str, config: PretrainedConfig) -> Optional[str]:
    """Why the fallback cannot serve `architecture`, or None when it can."""
    cls = transformers_class(architecture)
    if cls is None:
        return (f"transformers has no causal-LM class named {architecture!r} for the transformers "
                f"fallback either")
    if _uses_alibi(config):
        return (f"{architecture} uses ALiBi position biases, which our attention kernels do not "
                f"apply, so the transformers fallback cannot serve it either")
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "add_cross_attention", False):
        return (f"{architecture} (this config) uses cross-attention, which our paged KV cache does "
                f"not hold, so the transformers fallback cannot serve it")
    if not getattr(cls, "_supports_attention_backend", False):
        return (f"transformers' {architecture} computes attention itself instead of through its "
                f"attention-interface registry, so the transformers fallback cannot plug our KV "
                f"cache into it")
    return None


def resolve_model_impl(architecture: str, config: PretrainedConfig, requested: str = "auto") -> str:
    """'sglang' or 'transformers' for `requested` (--model-impl); logs the path taken. Raises a
    ValueError saying what to change when neither can serve the checkpoint."""
    if requested not in MODEL_IMPLS:
        raise ValueError(f"model_impl must be one of {MODEL_IMPLS}, got {requested!r}")
    ours = is_supported(architecture)
    if requested == "sglang" or (requested == "auto" and ours):
        if not ours:
            raise ValueError(f"model architecture {architecture!r} is not supported by sglang's own "
                             f"implementations (--model-impl sglang); to run it on transformers' modeling "
                             f"code use {_HINT}. Supported architectures: "
                             f"{', '.join(supported_architectures())}")
        logger.info("model %s: sglang's own implementation (--model-impl %s)", architecture, requested)
        return "sglang"
    refusal = fallback_refusal(architecture, config)
    if refusal is not None:
        prefix = "--model-impl transformers: " if requested == "transformers" else f"{unsupported_message(architecture)}; "
        raise ValueError(prefix + refusal)
    logger.info("model %s: transformers fallback (transformers' modeling code with sglang's paged KV "
                "cache and attention; slower than a native implementation; --model-impl %s)",
                architecture, requested)
    return "transformers"


def check_fallback_load(quantization: Any, tp_size: int, gguf: bool = False) -> None:
    """Refuse load options the fallback does not implement."""
    if gguf:
        raise ValueError("a GGUF checkpoint cannot run on the transformers fallback (--model-impl "
                         "transformers): its tensor names are ours; use --model-impl sglang or auto")
    if quantization is not None:
        raise ValueError(f"--quantization {quantization.name} is not supported by the transformers "
                         f"fallback (--model-impl transformers); serve the float checkpoint")
    if tp_size > 1:
        raise ValueError(f"--tp-size {tp_size} is not supported by the transformers fallback "
                         f"(--model-impl transformers); use --tp-size 1 or --dp-size")
