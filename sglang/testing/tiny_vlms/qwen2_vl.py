"""Tiny random Qwen2-VL and Qwen2.5-VL checkpoints.

A tiny Qwen2 language model (64 hidden, 2 layers, M-RoPE sections [2, 3, 3] over its 16-dim heads)
beside a tiny vision tower (depth 2, 14-pixel patches, 2x2 spatial merge, 2-frame temporal patches;
Qwen2.5-VL's has 56-pixel windows, so a 112-pixel image spans four windows, and full attention in
its last block). The tokenizer is a Qwen-style BPE with Qwen2-VL's vision tokens; the chat template
renders image / video parts as "<|vision_start|><|image_pad|><|vision_end|>" the way Qwen2-VL's
does. The image processor config keeps images between 56x56 and 112x112 pixels (4 to 16 tokens).

transformers' Qwen2-VL processors need torchvision for their video processor, even to be
constructed, so `AutoProcessor.from_pretrained(dir)` fails without it; our family processor
(`runtime/multimodal/families/qwen2_vl.py`) composes the tokenizer and the image processor (PIL
backend) instead and patchifies video frames itself.
"""

from __future__ import annotations

import math
import os
from types import MappingProxyType
from typing import Any, Dict, Mapping

import torch
import transformers

from sglang.testing.tiny_model import (
    TINY_DIMS,
    InitScales,
    _state_dict_to_save,
    build_model,
    config_json_dict,
    save_weights,
    write_generation_config,
)
from sglang.testing.tokenizer_factory import (
    TokenizerFamily,
    TokenizerIds,
    add_family_tokens,
    save_tokenizer,
    train_bpe,
    write_json,
)

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
MIN_PIXELS, MAX_PIXELS = 56 * 56, 112 * 112
DEFAULT_SYSTEM = "You are a helpful assistant."

# Qwen2-VL's chat format: a default system turn unless the conversation starts with one; content
# is a string or a list of parts, where image parts (type "image" or "image_url") and video parts
# (type "video" or "video_url") become vision blocks in place and text parts are written as is.
QWEN2_VL_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}"
    "{%- for part in message['content'] %}"
    "{%- if part['type'] in ['image', 'image_url'] %}{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] in ['video', 'video_url'] %}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QWEN2_VL_TOKENIZER = TokenizerFamily(
    name="qwen2_vl",
    specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", VISION_START, VISION_END, "<|vision_pad|>",
              IMAGE_PAD, VIDEO_PAD),
    bos=None, eos="<|im_end|>", pad="<|endoftext|>",
    stop_tokens=("<|im_end|>", "<|endoftext|>"), add_bos=False, chat_template=QWEN2_VL_CHAT_TEMPLATE,
    qwen_pretokenizer=True,
)

TINY_TEXT: Mapping[str, Any] = MappingProxyType({
    **TINY_DIMS,
    # 16-dim heads: 8 rotary frequencies, split time | height | width.
    "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
})

_VISION_COMMON: Mapping[str, Any] = MappingProxyType({
    "depth": 2,
    "num_heads": 2,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
})

TINY_VISION: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "qwen2_vl": MappingProxyType({**_VISION_COMMON, "embed_dim": 32, "mlp_ratio": 2,
                                  "hidden_act": "quick_gelu"}),
    # window_size is in pixels: 56 // 14 // 2 = 2x2 merged tokens per window.
    "qwen2_5_vl": MappingProxyType({**_VISION_COMMON, "hidden_size": 32, "intermediate_size": 64,
                                    "hidden_act": "silu", "window_size": 56, "fullatt_block_indexes": [1],
                                    "tokens_per_second": 2}),
})

_FAMILIES: Mapping[str, tuple] = MappingProxyType({
    # arch: (config class, architecture, processor class)
    "qwen2_vl": ("Qwen2VLConfig", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
})

# The language model's init: a little quieter than the text checkpoints' (linear 0.3), and untied
# embeddings by default (tied ones make logits sqrt(hidden) times the embedding scale). Image rows
# carry float32 rounding of the vision tower (~1e-6 relative, a different summation order than
# transformers'); a louder random language model amplifies that to 1e-4-sized log-prob
# differences, past what the fidelity tests allow. Median top-1/top-2 gaps stay ~0.35 nats.
VLM_INIT = InitScales(linear_std=0.2)


def write_qwen2_vl_tokenizer(out_dir: str, model_max_length: int) -> tuple[TokenizerIds, Dict[str, int]]:
    """The tiny Qwen BPE with Qwen2-VL's specials; returns its ids and the vision token ids."""
    tok = train_bpe(1000 - len(QWEN2_VL_TOKENIZER.specials), QWEN2_VL_TOKENIZER)
    ids = add_family_tokens(tok, QWEN2_VL_TOKENIZER)
    save_tokenizer(tok, QWEN2_VL_TOKENIZER, out_dir, model_max_length)
    with open(os.path.join(out_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(QWEN2_VL_CHAT_TEMPLATE)
    vision = {name: tok.token_to_id(token) for name, token in (
        ("vision_start_token_id", VISION_START), ("vision_end_token_id", VISION_END),
        ("image_token_id", IMAGE_PAD), ("video_token_id", VIDEO_PAD))}
    return ids, vision


def _reinit_vision_(model: torch.nn.Module, seed: int) -> None:
    """Vision weights at fan-in scale (std 1/sqrt(fan_in)) so the tower's outputs stay O(1) like
    the text embeddings: the text init's fixed 0.3 would blow up a 1176-wide patch projection."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".visual." not in f".{name}":
                continue
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if param.dim() >= 2:
                param.copy_(noise / math.sqrt(param[0].numel()))
            elif name.endswith(".bias"):
                param.copy_(noise * 0.1)
            else:  # norm scales
                param.copy_(1.0 + noise * 0.1)


def _write_processor_configs(arch: str, config: Any, out_dir: str) -> None:
    vision = config.vision_config
    write_json(os.path.join(out_dir, "preprocessor_config.json"), {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": _FAMILIES[arch][2],
        "do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "do_convert_rgb": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS,
        "patch_size": vision.patch_size, "temporal_patch_size": vision.temporal_patch_size,
        "merge_size": vision.spatial_merge_size,
    })
    write_json(os.path.join(out_dir, "processor_config.json"), {"processor_class": _FAMILIES[arch][2]})


def _make(arch: str, out_dir: str, seed: int, overrides: Dict[str, Any]) -> str:
    """`overrides` are top-level config fields, plus `text_config` / `vision_config` dicts."""
    overrides = dict(overrides)
    text_over, vision_over = overrides.pop("text_config", None) or {}, overrides.pop("vision_config", None) or {}
    if not isinstance(text_over, dict) or not isinstance(vision_over, dict):
        raise ValueError("text_config / vision_config overrides must be dicts of config fields")
    config_cls, architecture, _ = _FAMILIES[arch]
    os.makedirs(out_dir, exist_ok=True)
    text_fields = {**TINY_TEXT, **text_over}
    ids, vision_ids = write_qwen2_vl_tokenizer(out_dir, int(text_fields["max_position_embeddings"]))
    text_fields.update(vocab_size=ids.vocab_size, bos_token_id=ids.bos_id, pad_token_id=ids.pad_id,
                       eos_token_id=list(ids.stop_ids))
    vision_fields = {**TINY_VISION[arch], "hidden_size" if arch == "qwen2_vl" else "out_hidden_size":
                     text_fields["hidden_size"], **vision_over}
    fields = {**vision_ids, "tie_word_embeddings": False, **overrides}
    config = getattr(transformers, config_cls)(text_config=text_fields, vision_config=vision_fields,
                                               architectures=[architecture], dtype="float32", **fields)
    model = build_model(config, seed, VLM_INIT, ids.stop_ids)
    _reinit_vision_(model, seed)
    save_weights(_state_dict_to_save(model, config.tie_word_embeddings), out_dir)
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(config))
    write_generation_config(out_dir, ids)
    _write_processor_configs(arch, config, out_dir)
    return out_dir


def make_qwen2_vl(out_dir: str, seed: int = 0, **config_overrides: Any) -> str:
    """Tiny Qwen2VLForConditionalGeneration checkpoint in `out_dir`."""
    return _make("qwen2_vl", out_dir, seed, config_overrides)


def make_qwen2_5_vl(out_dir: str, seed: int = 0, **config_overrides: Any) -> str:
    """Tiny Qwen2_5_VLForConditionalGeneration checkpoint in `out_dir` (window attention)."""
    return _make("qwen2_5_vl", out_dir, seed, config_overrides)
