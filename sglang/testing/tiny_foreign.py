"""Tiny random checkpoints of architectures sglang does not implement (GPT-2, OPT), for the
transformers-fallback tests: built from transformers' config classes, with the tiny llama-style
tokenizer, cached like `fixtures.tiny_model_dir`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Dict

import torch
import transformers

from sglang.testing.fixtures import _cache_key, _cached_build
from sglang.testing.tokenizer_factory import TokenizerIds, write_tokenizer

HIDDEN, LAYERS, HEADS, POSITIONS = 64, 2, 4, 256
# Larger than transformers' 0.02 so logits are peaked: greedy runs then have clear winners.
INIT_STD = 0.2


def _gpt2(ids: TokenizerIds, **overrides: Any) -> transformers.PretrainedConfig:
    return transformers.GPT2Config(
        vocab_size=ids.vocab_size, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
        bos_token_id=ids.bos_id, eos_token_id=ids.eos_id, architectures=["GPT2LMHeadModel"], **overrides)


def _opt(ids: TokenizerIds, **overrides: Any) -> transformers.PretrainedConfig:
    return transformers.OPTConfig(
        vocab_size=ids.vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        ffn_dim=2 * HIDDEN, word_embed_proj_dim=HIDDEN, max_position_embeddings=POSITIONS,
        bos_token_id=ids.bos_id, eos_token_id=ids.eos_id, pad_token_id=ids.pad_id,
        architectures=["OPTForCausalLM"], **overrides)


CONFIGS: Dict[str, Callable[..., transformers.PretrainedConfig]] = {"gpt2": _gpt2, "opt": _opt}


def make_foreign_checkpoint(arch: str, out_dir: str, seed: int = 0, **overrides: Any) -> None:
    ids = write_tokenizer("llama", out_dir)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(CONFIGS[arch](ids, **overrides))
    with torch.no_grad():
        for name, param in model.named_parameters():
            # LayerNorm weights near 1, everything else N(0, INIT_STD).
            norm_scale = name.endswith("weight") and ("ln" in name or "layer_norm" in name)
            param.normal_(1.0 if norm_scale else 0.0, INIT_STD)
    model.save_pretrained(out_dir)


def foreign_model_dir(arch: str, seed: int = 0, **overrides: Any) -> str:
    """Path of a cached tiny `arch` ('gpt2' or 'opt') checkpoint."""
    if arch not in CONFIGS:
        raise ValueError(f"unknown foreign arch {arch!r}; choose one of {sorted(CONFIGS)}")
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]  # not in fixtures' fingerprint
    key = _cache_key("foreign", arch, {"seed": seed, "source": source, **overrides})
    return _cached_build(key, lambda d: make_foreign_checkpoint(arch, d, seed=seed, **overrides))
