"""Tiny random Gemma 3 checkpoints: the vision-language model and the text-only model.

Text model (both): 64 hidden, 4 layers alternating sliding (window 8) and global, 4 query / 2 KV
heads of 16 dims, q/k norms, query_pre_attn_scalar 24 (not the head dim, so a runtime that scales
by head_dim^-0.5 is caught), local rotary base 10 000 and a global one of 1e6 with linear scaling
(factor 2), no soft-capping (as Gemma 3 ships).

Vision model: a tiny SigLIP (56-pixel images of 7-pixel patches: 8x8 patches, 2 layers) whose
patch grid the projector average-pools to 4x4 = 16 tokens per image, more than the sliding window,
so sliding layers really cut into an image's bidirectional block.

The tokenizer is a Gemma-style BPE with Gemma 3's turn and image tokens (the tokenizer config
names boi/eoi/image tokens as Gemma 3's does, so transformers' Gemma3Processor finds them). The
chat template renders image parts as "<start_of_image>", which the processor expands to
"\\n\\n<start_of_image>" + 16 x "<image_soft_token>" + "<end_of_image>\\n\\n". The image processor
and processor configs are saved beside the weights, so `AutoProcessor.from_pretrained(dir)` gives
transformers' Gemma3Processor with its PIL image processor (no torchvision needed).
"""

from __future__ import annotations

import json
import os
from types import MappingProxyType
from typing import Any, Dict, Mapping, Tuple

import transformers

from sglang.testing.tiny_model import (
    GEMMA2_INIT,
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

BOI, EOI, IMAGE_SOFT = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
IMAGE_SIZE, PATCH = 56, 7
TOKENS_PER_IMAGE = 16

# Gemma's chat format with Gemma 3's image marks: no system role (its text opens the first user
# turn), assistant turns are "model" turns, and content is a string or a list of parts whose
# image parts ("image" / "image_url") become "<start_of_image>" in place.
GEMMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- macro render(content) %}"
    "{%- if content is string %}{{- content }}"
    "{%- else %}"
    "{%- for part in content %}"
    "{%- if part['type'] in ['image', 'image_url'] %}{{- '<start_of_image>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{%- endmacro %}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system = render(messages[0]['content']) + '\\n\\n' %}{%- set turns = messages[1:] %}"
    "{%- else %}{%- set system = '' %}{%- set turns = messages %}{%- endif %}"
    "{%- for message in turns %}"
    "{%- if message['role'] not in ['user', 'assistant'] %}"
    "{{- raise_exception('gemma3 chat supports system (first), user and assistant roles only') }}"
    "{%- endif %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{- '<start_of_turn>' + role + '\\n' + (system if loop.first else '') }}"
    "{{- render(message['content']) }}"
    "{{- '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"
)

GEMMA3_TOKENIZER = TokenizerFamily(
    name="gemma3",
    specials=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", BOI, EOI, IMAGE_SOFT),
    bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
    stop_tokens=("<end_of_turn>", "<eos>"), add_bos=True, chat_template=GEMMA3_CHAT_TEMPLATE,
)

TINY_TEXT: Mapping[str, Any] = MappingProxyType({
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "query_pre_attn_scalar": 24,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "sliding_window": 8,
    "layer_types": ["sliding_attention", "full_attention"] * 2,
    "rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1_000_000.0},
    },
    "hidden_activation": "gelu_pytorch_tanh",
    "final_logit_softcapping": None,
    "attn_logit_softcapping": None,
    "tie_word_embeddings": True,
})

TINY_VISION: Mapping[str, Any] = MappingProxyType({
    "model_type": "siglip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": IMAGE_SIZE,
    "patch_size": PATCH,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "vision_use_head": False,
})

# Gemma 3's image processor settings (bilinear resize to a square, [-1, 1] normalisation).
_PIXELS: Mapping[str, Any] = MappingProxyType({
    "image_processor_type": "Gemma3ImageProcessor",
    "processor_class": "Gemma3Processor",
    "do_resize": True,
    "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    "resample": 2,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_convert_rgb": None,
    "do_pan_and_scan": None,
    "pan_and_scan_max_num_crops": None,
    "pan_and_scan_min_crop_size": None,
    "pan_and_scan_min_ratio_to_activate": None,
})


def write_gemma3_tokenizer(out_dir: str, model_max_length: int) -> Tuple[TokenizerIds, Dict[str, int]]:
    """The tiny BPE with Gemma 3's specials; returns its ids and those of the image tokens."""
    tok = train_bpe(1000 - len(GEMMA3_TOKENIZER.specials), GEMMA3_TOKENIZER)
    ids = add_family_tokens(tok, GEMMA3_TOKENIZER)
    save_tokenizer(tok, GEMMA3_TOKENIZER, out_dir, model_max_length)
    path = os.path.join(out_dir, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    # Named like Gemma 3's own tokenizer config: the processor reads tokenizer.boi_token etc.
    config.update(boi_token=BOI, eoi_token=EOI, image_token=IMAGE_SOFT)
    write_json(path, config)
    with open(os.path.join(out_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(GEMMA3_CHAT_TEMPLATE)
    return ids, {name: tok.token_to_id(name) for name in (BOI, EOI, IMAGE_SOFT)}


def _pop_dict(overrides: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = overrides.pop(key, None) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} override must be a dict of config fields, got {value!r}")
    return value


def _text_fields(ids: TokenizerIds, overrides: Dict[str, Any]) -> Dict[str, Any]:
    return {
        **TINY_TEXT,
        "vocab_size": ids.vocab_size,
        "bos_token_id": ids.bos_id,
        "eos_token_id": list(ids.stop_ids),
        "pad_token_id": ids.pad_id,
        **overrides,
    }


def _save(config: Any, out_dir: str, seed: int, ids: TokenizerIds) -> None:
    model = build_model(config, seed, GEMMA2_INIT, ids.stop_ids)
    save_weights(_state_dict_to_save(model, True), out_dir)
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(config))
    write_generation_config(out_dir, ids)


def make_gemma3_text(out_dir: str, seed: int = 0, **config_overrides: Any) -> str:
    """Tiny Gemma3ForCausalLM checkpoint in `out_dir` (overrides: Gemma3TextConfig fields)."""
    os.makedirs(out_dir, exist_ok=True)
    max_len = int(config_overrides.get("max_position_embeddings", TINY_TEXT["max_position_embeddings"]))
    ids, _ = write_gemma3_tokenizer(out_dir, max_len)
    config = transformers.Gemma3TextConfig(architectures=["Gemma3ForCausalLM"], dtype="float32",
                                           **_text_fields(ids, dict(config_overrides)))
    _save(config, out_dir, seed, ids)
    return out_dir


def make_gemma3(out_dir: str, seed: int = 0, **config_overrides: Any) -> str:
    """Tiny Gemma3ForConditionalGeneration checkpoint in `out_dir`. Overrides are top-level
    Gemma3Config fields (e.g. mm_tokens_per_image), plus `text_config` and `vision_config` (dicts
    of fields)."""
    overrides = dict(config_overrides)
    text_overrides, vision_overrides = _pop_dict(overrides, "text_config"), _pop_dict(overrides, "vision_config")
    os.makedirs(out_dir, exist_ok=True)
    max_len = int(text_overrides.get("max_position_embeddings", TINY_TEXT["max_position_embeddings"]))
    ids, image_ids = write_gemma3_tokenizer(out_dir, max_len)
    fields: Dict[str, Any] = {"mm_tokens_per_image": TOKENS_PER_IMAGE, "boi_token_index": image_ids[BOI],
                              "eoi_token_index": image_ids[EOI], "image_token_index": image_ids[IMAGE_SOFT],
                              **overrides}
    config = transformers.Gemma3Config(
        text_config=_text_fields(ids, text_overrides), vision_config={**TINY_VISION, **vision_overrides},
        architectures=["Gemma3ForConditionalGeneration"], dtype="float32", eos_token_id=list(ids.stop_ids),
        **fields)
    _save(config, out_dir, seed, ids)
    _write_processor_configs(config, out_dir)
    return out_dir


def _write_processor_configs(config: Any, out_dir: str) -> None:
    size = config.vision_config.image_size
    write_json(os.path.join(out_dir, "preprocessor_config.json"),
               {**_PIXELS, "size": {"height": size, "width": size}})
    write_json(os.path.join(out_dir, "processor_config.json"),
               {"processor_class": "Gemma3Processor", "image_seq_length": config.mm_tokens_per_image})
