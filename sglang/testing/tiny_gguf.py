"""GGUF files converted from tiny Hugging Face checkpoints, as llama.cpp's converter writes them.

`write_tiny_gguf(checkpoint_dir, out_path, tensor_type="F32")` reads a checkpoint made by
`sglang.testing.tiny_model` (llama, mistral, qwen2, qwen3, gemma2) and writes one GGUF file with
the `gguf` package's writer:

- metadata under llama.cpp's keys for the architecture (Mistral is written as 'llama', as the
  converter does; its name says Mistral), Llama 3 rope scaling as a `rope_freqs` tensor;
- the byte-level BPE tokenizer as a 'gpt2' vocabulary (tokens, token types, merges, special ids,
  add-BOS flag, chat template);
- tensors renamed by the `gguf` package's own name map, with the converter's transforms applied
  (llama/mistral q/k rows interleaved per head; Gemma norms stored as 1 + w; no lm_head when the
  embeddings are tied), 1-D tensors and norms in F32 and the matrices in `tensor_type`.

The tensor transforms are written here from the converter's rules, independently of the
runtime's GGUF loader, so a round trip through both checks the loader.

CLI: python -m sglang.testing.tiny_gguf --checkpoint DIR --out model.gguf [--type Q8_0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from types import MappingProxyType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from safetensors.numpy import load_file
from transformers import AutoConfig, PretrainedConfig

GGUF_FILE_NAME = "model.gguf"
# HF model_type -> llama.cpp architecture name.
GGUF_ARCH_OF: Mapping[str, str] = MappingProxyType({
    "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma2": "gemma2",
})
# Families whose vocabulary llama.cpp pre-tokenizes with Qwen's split regex.
_QWEN_PRE = ("qwen2", "qwen3")


def _gguf():
    import gguf

    return gguf


# ---------------------------------------------------------------- tensors


def interleave_rotary_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's q/k reorder: per head, rotate-half rows (first half, second half) become
    interleaved pairs (row j of each half side by side)."""
    half = weight.shape[0] // num_heads // 2
    return weight.reshape(num_heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _converted(name: str, data: np.ndarray, config: PretrainedConfig) -> np.ndarray:
    if config.model_type in ("llama", "mistral"):
        if ".q_proj." in name:
            return interleave_rotary_rows(data, config.num_attention_heads)
        if ".k_proj." in name:
            return interleave_rotary_rows(data, config.num_key_value_heads)
    if config.model_type == "gemma2" and name.endswith("norm.weight"):
        return data + np.float32(1.0)
    return data


def _gguf_name(hf_name: str, name_map: Any) -> str:
    base, _, suffix = hf_name.rpartition(".")
    mapped = name_map.get_name(base)
    if mapped is None:
        raise ValueError(f"the gguf package has no GGUF name for tensor {hf_name!r}")
    return f"{mapped}.{suffix}"


def _stored(gguf_name: str, data: np.ndarray, qtype: Any) -> Tuple[np.ndarray, Any]:
    """(bytes or floats to write, their type): norms and vectors stay F32, as in llama.cpp."""
    gguf = _gguf()
    if data.ndim <= 1 or gguf_name.endswith("_norm.weight"):
        qtype = gguf.GGMLQuantizationType.F32
    try:
        return gguf.quants.quantize(data.astype(np.float32), qtype), qtype
    except gguf.QuantError:  # a row not a whole number of blocks: the converter falls back to F16
        return gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.F16), \
            gguf.GGMLQuantizationType.F16


def _rope_freqs(config: PretrainedConfig) -> Optional[np.ndarray]:
    """Llama 3 scaling as llama.cpp writes it: one divisor per rotary frequency."""
    scaling = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return None
    base, dim = float(scaling.get("rope_theta", getattr(config, "rope_theta", 10000.0))), config.head_dim
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    divisors = []
    for freq in 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim):
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            divisors.append(1.0)
        elif wavelen > old / low:
            divisors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            divisors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(divisors, dtype=np.float32)


def _tensors(checkpoint_dir: str, config: PretrainedConfig) -> Iterator[Tuple[str, np.ndarray]]:
    gguf = _gguf()
    arch = GGUF_ARCH_OF[config.model_type]
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    divisors = _rope_freqs(config)
    if divisors is not None:
        yield "rope_freqs.weight", divisors
    tensors = load_file(os.path.join(checkpoint_dir, "model.safetensors"))
    for name in sorted(tensors):
        if name == "lm_head.weight" and (config.tie_word_embeddings or arch == "gemma2"):
            continue
        yield _gguf_name(name, name_map), _converted(name, tensors[name].astype(np.float32), config)


# ---------------------------------------------------------------- metadata


def _model_metadata(writer: Any, config: PretrainedConfig, file_type: Any, name: str) -> None:
    gguf = _gguf()
    writer.add_name(name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_file_type(file_type)
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if config.model_type != "gemma2":  # the converter writes no rope base for Gemma 2 (default 10000)
        writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    if rope.get("rope_type") == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(rope["factor"])
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    if config.model_type in ("llama", "mistral"):
        writer.add_vocab_size(config.vocab_size)
        writer.add_rope_dimension_count(config.head_dim)
    if getattr(config, "sliding_window", None) and config.model_type in ("mistral", "gemma2"):
        writer.add_sliding_window(config.sliding_window)
    if config.model_type == "gemma2":
        writer.add_attn_logit_softcapping(config.attn_logit_softcapping)
        writer.add_final_logit_softcapping(config.final_logit_softcapping)


def _vocabulary(tokenizer_json: Dict[str, Any], vocab_size: int) -> Tuple[List[str], List[int]]:
    gguf = _gguf()
    special = {t["id"] for t in tokenizer_json["added_tokens"] if t.get("special")}
    by_id = {i: tok for tok, i in tokenizer_json["model"]["vocab"].items()}
    by_id.update({t["id"]: t["content"] for t in tokenizer_json["added_tokens"]})
    tokens, types = [], []
    for i in range(vocab_size):  # rows beyond the tokenizer are padding, as the converter names them
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(gguf.TokenType.UNUSED if i not in by_id else
                     gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    return tokens, types


def _merges(tokenizer_json: Dict[str, Any]) -> List[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]


def _tokenizer_metadata(writer: Any, checkpoint_dir: str, config: PretrainedConfig) -> None:
    with open(os.path.join(checkpoint_dir, "tokenizer.json"), encoding="utf-8") as f:
        tokenizer_json = json.load(f)
    with open(os.path.join(checkpoint_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        tokenizer_config = json.load(f)
    tokens, types = _vocabulary(tokenizer_json, config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if config.model_type in _QWEN_PRE else "gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(tokenizer_json))
    ids = {tok: i for i, tok in enumerate(tokens)}
    for key, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                     ("unk_token", writer.add_unk_token_id), ("pad_token", writer.add_pad_token_id)):
        if tokenizer_config.get(key) is not None:
            add(ids[tokenizer_config[key]])
    writer.add_add_bos_token(bool(tokenizer_config.get("add_bos_token", False)))
    writer.add_add_eos_token(bool(tokenizer_config.get("add_eos_token", False)))
    writer.add_chat_template(tokenizer_config["chat_template"])


# ---------------------------------------------------------------- writing


def _file_type(qtype: Any) -> Any:
    gguf = _gguf()
    return gguf.LlamaFileType.ALL_F32 if qtype.name == "F32" else gguf.LlamaFileType[f"MOSTLY_{qtype.name}"]


def write_tiny_gguf(checkpoint_dir: str, out_path: str, tensor_type: str = "F32", name: Optional[str] = None,
                    raw_tensors: Optional[Mapping[str, Tuple[np.ndarray, str]]] = None) -> str:
    """Convert the tiny checkpoint in `checkpoint_dir` into the GGUF file `out_path`; return it.

    `tensor_type`: a ggml type the `gguf` package can quantize to (F32, F16, BF16, Q8_0, Q4_0,
    Q4_1, Q5_0, Q5_1, ...), used for every matrix. `raw_tensors` replaces (or adds) tensors by
    GGUF name with ready-made data: {name: (uint8 blocks [rows, bytes per row] or floats, ggml
    type name)}, for types the package can only dequantize (K-quants, IQ*) or not at all."""
    gguf = _gguf()
    config = AutoConfig.from_pretrained(checkpoint_dir)
    if config.model_type not in GGUF_ARCH_OF:
        raise ValueError(f"no GGUF conversion for model_type {config.model_type!r}; supported: {sorted(GGUF_ARCH_OF)}")
    qtype = gguf.GGMLQuantizationType[tensor_type]
    writer = gguf.GGUFWriter(out_path, GGUF_ARCH_OF[config.model_type])
    _model_metadata(writer, config, _file_type(qtype), name or f"tiny {config.model_type}")
    _tokenizer_metadata(writer, checkpoint_dir, config)
    raw_tensors = dict(raw_tensors or {})
    for gguf_name, data in _tensors(checkpoint_dir, config):
        if gguf_name in raw_tensors:
            blocks, type_name = raw_tensors.pop(gguf_name)
            writer.add_tensor(gguf_name, blocks, raw_dtype=gguf.GGMLQuantizationType[type_name])
            continue
        stored, stored_type = _stored(gguf_name, data, qtype)
        writer.add_tensor(gguf_name, stored, raw_dtype=stored_type)
    for gguf_name, (blocks, type_name) in raw_tensors.items():  # names the checkpoint lacks: added
        writer.add_tensor(gguf_name, blocks, raw_dtype=gguf.GGMLQuantizationType[type_name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sglang.testing.tiny_gguf",
                                     description="Convert a tiny HF checkpoint into a GGUF file.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (sglang.testing.tiny_model)")
    parser.add_argument("--out", required=True, help="GGUF file to write")
    parser.add_argument("--type", default="F32", help="ggml type of the matrices (F32, F16, Q8_0, Q4_0, ...)")
    args = parser.parse_args(argv)
    print(write_tiny_gguf(args.checkpoint, args.out, args.type))


if __name__ == "__main__":
    main()
