"""Real vision-language model shapes without weights, for `--load-format dummy` benchmarks.

`write_vlm_shape("qwen2.5-vl-7b", dir)` writes config.json with Qwen2.5-VL-7B-Instruct's published
dimensions (text and vision tower), a synthetic byte-level tokenizer with exactly `vocab_size`
entries and Qwen2-VL's special tokens, the chat template, and the image processor configs with
the real pixel bounds, so a 448x448 image becomes 1024 patches and 256 placeholder tokens.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any, Mapping

import transformers

from sglang.testing.shapes import synthetic_bpe
from sglang.testing.tiny_model import config_json_dict, write_generation_config
from sglang.testing.tiny_vlms.qwen2_vl import (
    IMAGE_PAD,
    QWEN2_VL_CHAT_TEMPLATE,
    QWEN2_VL_TOKENIZER,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
)
from sglang.testing.tokenizer_factory import add_family_tokens, save_tokenizer, write_json

# Qwen2.5-VL-7B-Instruct (config.json on the Hub).
QWEN2_5_VL_7B: Mapping[str, Any] = MappingProxyType({
    "text": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 128000,
             "rms_norm_eps": 1e-6, "hidden_act": "silu", "use_sliding_window": False,
             "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}},
    "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_channels": 3,
               "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
               "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
               "hidden_act": "silu"},
    "min_pixels": 56 * 56,
    "max_pixels": 28 * 28 * 1280,
})
VLM_SHAPES: Mapping[str, Mapping[str, Any]] = MappingProxyType({"qwen2.5-vl-7b": QWEN2_5_VL_7B})


def write_vlm_shape(name: str, out_dir: str) -> str:
    if name not in VLM_SHAPES:
        raise ValueError(f"unknown vision-language shape {name!r}; choose one of {sorted(VLM_SHAPES)}")
    spec = VLM_SHAPES[name]
    family = QWEN2_VL_TOKENIZER
    text = dict(spec["text"])
    tok = synthetic_bpe(text["vocab_size"] - len(family.specials), family)
    ids = add_family_tokens(tok, family)
    os.makedirs(out_dir, exist_ok=True)
    save_tokenizer(tok, family, out_dir, model_max_length=text["max_position_embeddings"])
    with open(os.path.join(out_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(QWEN2_VL_CHAT_TEMPLATE)
    vision_ids = {key: tok.token_to_id(token) for key, token in (
        ("vision_start_token_id", VISION_START), ("vision_end_token_id", VISION_END),
        ("image_token_id", IMAGE_PAD), ("video_token_id", VIDEO_PAD))}
    text.update(bos_token_id=ids.bos_id, pad_token_id=ids.pad_id, eos_token_id=list(ids.stop_ids))
    config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=dict(spec["vision"]),
                                           architectures=["Qwen2_5_VLForConditionalGeneration"],
                                           dtype="bfloat16", tie_word_embeddings=False, **vision_ids)
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(config))
    write_generation_config(out_dir, ids)
    vision = spec["vision"]
    write_json(os.path.join(out_dir, "preprocessor_config.json"), {
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
        "do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "do_convert_rgb": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "size": {"shortest_edge": spec["min_pixels"], "longest_edge": spec["max_pixels"]},
        "min_pixels": spec["min_pixels"], "max_pixels": spec["max_pixels"],
        "patch_size": vision["patch_size"], "temporal_patch_size": vision["temporal_patch_size"],
        "merge_size": vision["spatial_merge_size"],
    })
    write_json(os.path.join(out_dir, "processor_config.json"), {"processor_class": "Qwen2_5_VLProcessor"})
    return out_dir


if __name__ == "__main__":
    import sys

    print(write_vlm_shape(sys.argv[1], sys.argv[2]))
