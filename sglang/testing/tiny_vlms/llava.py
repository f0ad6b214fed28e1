"""Tiny random LLaVA (1.5) and LLaVA-NeXT checkpoints.

A tiny CLIP vision tower (28-pixel tiles of 7-pixel patches: 16 patches + CLS) and a tiny text model
(Llama by default; `text_arch="qwen2"` or `"mistral"` for the other language models we serve) joined
by the two-layer projector. The tokenizer is a Llama-2-style BPE with "<image>" as a special token;
the chat template renders image parts of a message as "<image>\\n" the way LLaVA's does. The image
processor and processor configs are saved beside the weights, so `AutoProcessor.from_pretrained(dir)`
gives transformers' LLaVA processors (their PIL backends: no torchvision needed).

LLaVA-NeXT's any-resolution grid is LLaVA-NeXT's own grid scaled from 336- to 28-pixel tiles.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any, Dict, Mapping

import transformers

from sglang.testing.tiny_model import (
    InitScales,
    _state_dict_to_save,
    build_model,
    config_json_dict,
    save_weights,
    tiny_config,
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

IMAGE_TOKEN = "<image>"
TILE = 28  # vision tower input size
PATCH = 7  # 4x4 patches per tile

# Images of a message first (one "<image>\n" each), then its text: what LLaVA-1.5's template does.
# Content may be a plain string too. System text stands alone before the first turn. No BOS: the
# tokenizer adds it (as for the hub's llava-hf checkpoints, whose processor tokenizes the rendering).
LLAVA_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}"
    "{%- set images = [] %}{%- set texts = [message['content']] %}"
    "{%- else %}"
    "{%- set images = message['content'] | selectattr('type', 'in', ['image', 'image_url']) | list %}"
    "{%- set texts = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | list %}"
    "{%- endif %}"
    "{%- if message['role'] == 'system' %}{{- texts | join(' ') + '\\n' }}"
    "{%- elif message['role'] == 'user' %}"
    "{{- 'USER: ' }}{%- for _ in images %}{{- '<image>\\n' }}{%- endfor %}{{- texts | join(' ') + ' ' }}"
    "{%- elif message['role'] == 'assistant' %}{{- 'ASSISTANT: ' + texts | join(' ') + eos_token }}"
    "{%- else %}{{- raise_exception('llava chat supports system, user and assistant roles only') }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'ASSISTANT:' }}{%- endif %}"
)

LLAVA_TOKENIZER = TokenizerFamily(
    name="llava",
    specials=("<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN),
    bos="<s>", eos="</s>", pad="<pad>", unk="<unk>",
    stop_tokens=("</s>",), add_bos=True, chat_template=LLAVA_CHAT_TEMPLATE,
)

TINY_VISION: Mapping[str, Any] = MappingProxyType({
    "model_type": "clip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": TILE,
    "patch_size": PATCH,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
})

# Smaller linear scales than the text checkpoints' 0.3: at 0.3 the tiny language model turns the
# float32 rounding of the vision tower (~1e-6 relative, conv vs matmul order) into ~1e-4 log-prob
# differences, too close to the fidelity tolerance; at 0.2 it stays near 1e-5 with greedy steps
# still well separated.
VLM_INIT = InitScales(linear_std=0.2)

# LLaVA-NeXT's [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]] at 28-pixel tiles.
TINY_GRID_PINPOINTS = ((28, 56), (56, 28), (56, 56), (84, 28), (28, 84))

# What hub LLaVA checkpoints carry: CLIP's normalisation, bicubic resize, centre crop.
_CLIP_PIXELS: Mapping[str, Any] = MappingProxyType({
    "do_resize": True,
    "size": {"shortest_edge": TILE},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": TILE, "width": TILE},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
})


def write_llava_tokenizer(out_dir: str, model_max_length: int) -> tuple[TokenizerIds, int]:
    """The tiny BPE with LLaVA's specials; returns its ids and the id of "<image>"."""
    tok = train_bpe(1000 - len(LLAVA_TOKENIZER.specials), LLAVA_TOKENIZER)
    ids = add_family_tokens(tok, LLAVA_TOKENIZER)
    save_tokenizer(tok, LLAVA_TOKENIZER, out_dir, model_max_length)
    with open(os.path.join(out_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(LLAVA_CHAT_TEMPLATE)
    return ids, tok.token_to_id(IMAGE_TOKEN)


def _pop_dict(overrides: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = overrides.pop(key, None) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} override must be a dict of config fields, got {value!r}")
    return value


def _make(arch: str, out_dir: str, seed: int, overrides: Dict[str, Any]) -> str:
    """Shared body: `overrides` are top-level LlavaConfig / LlavaNextConfig fields, plus
    `text_arch` (llama, qwen2, mistral), `text_config` and `vision_config` (dicts of fields)."""
    overrides = dict(overrides)
    text_arch = overrides.pop("text_arch", "llama")
    if text_arch not in ("llama", "qwen2", "mistral"):
        raise ValueError(f"text_arch {text_arch!r} is not a LLaVA language model; use llama, qwen2 or mistral")
    text_overrides, vision_overrides = _pop_dict(overrides, "text_config"), _pop_dict(overrides, "vision_config")
    os.makedirs(out_dir, exist_ok=True)
    max_len = int(text_overrides.get("max_position_embeddings", 1024))
    ids, image_id = write_llava_tokenizer(out_dir, max_len)
    text_config = tiny_config(text_arch, ids, **text_overrides)
    vision_config = {**TINY_VISION, **vision_overrides}
    if vision_config["model_type"] == "siglip_vision_model":
        vision_config.pop("projection_dim")  # CLIP-only field
    fields: Dict[str, Any] = {"image_token_index": image_id, "vision_feature_select_strategy": "default",
                              "vision_feature_layer": -2, "projector_hidden_act": "gelu"}
    if arch == "llava_next":
        fields["image_grid_pinpoints"] = [list(p) for p in TINY_GRID_PINPOINTS]
    fields.update(overrides)
    config_cls = transformers.LlavaNextConfig if arch == "llava_next" else transformers.LlavaConfig
    architecture = "LlavaNextForConditionalGeneration" if arch == "llava_next" else "LlavaForConditionalGeneration"
    config = config_cls(text_config=text_config.to_dict(), vision_config=vision_config,
                        architectures=[architecture], dtype="float32", **fields)
    model = build_model(config, seed, VLM_INIT, ids.stop_ids)
    save_weights(_state_dict_to_save(model, config.tie_word_embeddings), out_dir)
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(config))
    write_generation_config(out_dir, ids)
    _write_processor_configs(arch, config, out_dir)
    return out_dir


def _write_processor_configs(arch: str, config: Any, out_dir: str) -> None:
    pixels: Dict[str, Any] = dict(_CLIP_PIXELS)
    tile = config.vision_config.image_size
    pixels["size"], pixels["crop_size"] = {"shortest_edge": tile}, {"height": tile, "width": tile}
    if arch == "llava_next":
        pixels.update(image_processor_type="LlavaNextImageProcessor", processor_class="LlavaNextProcessor",
                      do_pad=True, image_grid_pinpoints=config.image_grid_pinpoints)
    else:
        pixels.update(image_processor_type="CLIPImageProcessor", processor_class="LlavaProcessor")
    write_json(os.path.join(out_dir, "preprocessor_config.json"), pixels)
    # CLIP's tower adds a class token to the patches (SigLIP's does not); "default" drops it again.
    write_json(os.path.join(out_dir, "processor_config.json"), {
        "processor_class": pixels["processor_class"],
        "image_token": IMAGE_TOKEN,
        "patch_size": config.vision_config.patch_size,
        "vision_feature_select_strategy": config.vision_feature_select_strategy,
        "num_additional_image_tokens": int(config.vision_config.model_type == "clip_vision_model"),
    })


def make_llava(out_dir: str, seed: int = 0, **config_overrides: Any) -> str:
    """Tiny LlavaForConditionalGeneration checkpoint in `out_dir`."""
    return _make("llava", out_dir, seed, config_overrides)


def make_llava_next(out_dir: str, seed: int = 0, **config_overrides: Any) -> str:
    """Tiny LlavaNextForConditionalGeneration checkpoint in `out_dir` (any-resolution tiling)."""
    return _make("llava_next", out_dir, seed, config_overrides)
