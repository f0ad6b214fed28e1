"""GGUF checkpoints through our loader, on tiny files written the way llama.cpp's converter writes
them (sglang.testing.tiny_gguf): the same model as the safetensors checkpoint they came from, the
same as transformers' own GGUF loader, every tensor type the gguf package dequantizes, Llama 3
rope scaling from rope_freqs, and the tokenizer + chat template + stop tokens from the file."""

from __future__ import annotations

import os
from typing import List

import numpy as np
import pytest
import torch
from safetensors import safe_open

from sglang.runtime.models.gguf.archs import select_arch
from sglang.runtime.models.gguf.checkpoint import GGUFCheckpoint
from sglang.runtime.models.gguf.rope_freqs import llama3_scaling_from_divisors
from sglang.runtime.models.gguf.weights import dequantizable_types, iterate_gguf_weights
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_gguf_path, tiny_model_dir
from sglang.testing.hf_reference import hf_model
from sglang.testing.tiny_gguf import write_tiny_gguf
from tests.models.harness import KVHarness, hf_prompt_logprobs, logprobs

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma2")
PROMPT_LENS = (5, 12, 23, 37)  # beyond Gemma 2's window of 8
CONFIG_FIELDS = ("architectures", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                 "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
                 "rms_norm_eps", "tie_word_embeddings", "rope_parameters", "bos_token_id", "pad_token_id")
GEMMA2_FIELDS = ("query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "sliding_window",
                 "layer_types")


def _prompts(vocab: int, seed: int = 1) -> List[List[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]


def _prompt_and_decode_logits(path: str) -> torch.Tensor:
    """Every prompt position's logits of a batched extend, then two batched decode steps."""
    mc = ModelConfig(path)
    h = KVHarness.for_config(load_model(mc), mc)
    prompts = _prompts(mc.vocab_size)
    rows = [h.new_request() for _ in prompts]
    out = [h.extend(rows, prompts, return_logprob=True).input_logits]
    for step in range(2):
        out.append(h.decode(rows, [(7 * step + i) % mc.vocab_size for i in range(len(rows))]).next_token_logits)
    return torch.cat(out)


@pytest.mark.parametrize("arch", ARCHS)
def test_gguf_is_the_model_of_its_safetensors_checkpoint(arch):
    gguf_mc, st_mc = ModelConfig(tiny_gguf_path(arch)), ModelConfig(tiny_model_dir(arch))
    assert gguf_mc.gguf is not None and st_mc.gguf is None
    fields = CONFIG_FIELDS + (GEMMA2_FIELDS if arch == "gemma2" else ())
    ours, ref = gguf_mc.hf_config.to_dict(), st_mc.hf_config.to_dict()
    assert {k: ours.get(k) for k in fields} == {k: ref.get(k) for k in fields}
    assert (gguf_mc.architecture, gguf_mc.sliding_window, gguf_mc.context_len) == \
        (st_mc.architecture, st_mc.sliding_window, st_mc.context_len)
    assert gguf_mc.hf_eos_token_ids == st_mc.hf_eos_token_ids  # llama.cpp's end-of-generation tokens
    diff = (_prompt_and_decode_logits(tiny_gguf_path(arch)) - _prompt_and_decode_logits(tiny_model_dir(arch)))
    assert diff.abs().max().item() <= 1e-5


# transformers' GGUF config reader leaves head_dim (qwen3) and query_pre_attn_scalar (gemma2) at the
# config class defaults (128; 256 = head_dim for real Gemma 2 files), so those variants use them.
HF_VARIANTS = {"llama": {}, "mistral": {}, "qwen2": {}, "qwen3": {"head_dim": 128}, "gemma2": {"head_dim": 256}}


@pytest.mark.parametrize("arch", sorted(HF_VARIANTS))
def test_gguf_matches_transformers_gguf_loader(arch):
    path = tiny_gguf_path(arch, **HF_VARIANTS[arch])
    mc = ModelConfig(path)
    h = KVHarness.for_config(load_model(mc), mc)
    prompts = _prompts(mc.vocab_size, seed=2)
    out = h.extend([h.new_request() for _ in prompts], prompts, return_logprob=True)
    hf = hf_model(path)  # transformers' from_pretrained(dir, gguf_file=...)
    for rows, prompt in zip(torch.split(out.input_logits, [len(p) for p in prompts]), prompts):
        assert (logprobs(rows) - hf_prompt_logprobs(hf, prompt)).abs().max().item() <= 1e-4


# Relative (Frobenius) error bounds of each type's rounding: half precision's mantissa, and the
# block formats' step (scale / 2^bits) relative to the block's largest value.
QUANT_BOUNDS = {"F16": 5e-4, "BF16": 4e-3, "Q8_0": 1e-2, "Q5_0": 6e-2, "Q5_1": 6e-2, "Q4_0": 1.2e-1, "Q4_1": 1.2e-1}


@pytest.mark.parametrize("tensor_type", sorted(QUANT_BOUNDS))
def test_quantized_weights_round_trip_within_their_error(tensor_type):
    import gguf

    ref = dict(load_model(ModelConfig(tiny_model_dir("llama"))).named_parameters())
    model = load_model(ModelConfig(tiny_gguf_path("llama", tensor_type)))
    for name, param in model.named_parameters():
        err = ((param - ref[name]).norm() / ref[name].norm()).item()
        if param.dim() == 1:
            assert err == 0, name  # norms stay F32, as llama.cpp writes them
        else:
            assert 0 < err <= QUANT_BOUNDS[tensor_type], (name, err)
    # Exactly the gguf package's own round trip (no transform on o_proj).
    qtype = gguf.GGMLQuantizationType[tensor_type]
    original = ref["model.layers.1.self_attn.o_proj.weight"].numpy()
    expected = gguf.quants.dequantize(gguf.quants.quantize(original, qtype), qtype)
    assert torch.equal(dict(model.named_parameters())["model.layers.1.self_attn.o_proj.weight"],
                       torch.from_numpy(np.array(expected)))


def _block_types_for_rows(row: int) -> List[str]:
    """Block-quantized types the gguf package dequantizes, whose blocks tile a row of `row`."""
    import gguf

    types = []
    for name in dequantizable_types():
        qtype = gguf.GGMLQuantizationType[name]
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        if name not in ("F32", "F16") and row % block == 0:
            types.append(name)
    return types


def test_every_dequantizable_tensor_type_loads(tmp_path):
    """K-quants, IQ and the other types gguf can only dequantize: random blocks (bytes < 0x40, so
    every half-precision scale is finite) come out of our loader exactly as gguf dequantizes them."""
    import gguf

    overrides = {"hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 5}  # 27 tensor slots
    source = tiny_model_dir("llama", **overrides)
    slots = ["token_embd.weight", "output.weight"] + [f"blk.{i}.{leaf}.weight" for i in range(5)
                                                      for leaf in ("attn_v", "attn_output", "ffn_gate", "ffn_up",
                                                                   "ffn_down")]
    types = _block_types_for_rows(256)
    assert {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_0", "Q8_0"} <= set(types) and len(types) <= len(slots)
    with safe_open(os.path.join(source, "model.safetensors"), framework="np") as f:
        rows = {slot: f.get_slice(_our_name(slot)).get_shape()[0] for slot in slots}
    gen = np.random.default_rng(0)
    raw = {}
    for slot, name in zip(slots, types):
        qtype = gguf.GGMLQuantizationType[name]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw[slot] = (gen.integers(0, 0x40, (rows[slot], 256 // block * size), dtype=np.uint8), name)
    path = write_tiny_gguf(source, str(tmp_path / "all-types.gguf"), raw_tensors=raw)
    mc = ModelConfig(path)
    loaded = dict(iterate_gguf_weights(mc.gguf, select_arch(mc.gguf), mc.hf_config, torch.float32, progress=False))
    for slot, (blocks, name) in raw.items():
        ours = loaded[_our_name(slot)]
        expected = torch.from_numpy(np.array(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[name])))
        assert torch.isfinite(expected).all() and torch.equal(ours, expected), name
    load_model(mc)  # and through the model's own weight loaders


def _our_name(slot: str) -> str:
    names = {"token_embd": "model.embed_tokens", "output": "lm_head", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    parts = slot.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{names[parts[2]]}.weight"
    return f"{names[parts[0]]}.weight"


LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64, "rope_theta": 500000.0}


def test_llama3_rope_scaling_comes_back_from_rope_freqs():
    """llama.cpp stores Llama 3.1 scaling only as per-frequency divisors (rope_freqs); the config
    recovers the parameters and the model equals the safetensors checkpoint."""
    overrides = {"rope_parameters": LLAMA3_ROPE, "head_dim": 64}  # 32 frequencies, 3 of them blended
    path = tiny_gguf_path("llama", **overrides)
    ckpt = GGUFCheckpoint(path)
    assert ckpt.has_tensor("rope_freqs.weight") and ckpt.arch_get("rope.scaling.type", None) is None
    rope = ModelConfig(path).hf_config.rope_parameters
    assert rope["rope_type"] == "llama3"
    assert {k: round(float(rope[k]), 4) for k in LLAMA3_ROPE if k != "rope_type"} == \
        {k: v for k, v in LLAMA3_ROPE.items() if k != "rope_type"}
    diff = _prompt_and_decode_logits(path) - _prompt_and_decode_logits(tiny_model_dir("llama", **overrides))
    assert diff.abs().max().item() <= 1e-5


@pytest.mark.parametrize("factor", [8.0, 32.0])  # Llama 3.1 8B, Llama 3.2 1B/3B
def test_llama3_scaling_of_published_models_recovered_exactly(factor):
    from transformers import LlamaConfig

    from sglang.testing.tiny_gguf import _rope_freqs

    published = {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192}
    config = LlamaConfig(head_dim=128, rope_parameters={**published, "rope_theta": 500000.0})
    assert llama3_scaling_from_divisors(_rope_freqs(config), 500000.0, 128) == published


def test_rope_freqs_of_another_shape_is_refused():
    divisors = np.linspace(1.0, 3.0, 64) ** 2  # no flat ends: not Llama 3's curve
    with pytest.raises(ValueError, match="does not describe Llama 3 rope scaling"):
        llama3_scaling_from_divisors(divisors, 500000.0, 128)


ROPE_SCALINGS = {
    "linear": ("llama", {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
    "yarn": ("qwen2", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256,
                       "rope_theta": 10000.0}),
}


@pytest.mark.parametrize("kind", sorted(ROPE_SCALINGS))
def test_rope_scaling_round_trips(kind):
    arch, rope = ROPE_SCALINGS[kind]
    path = tiny_gguf_path(arch, rope_parameters=rope)
    assert ModelConfig(path).hf_config.rope_parameters == rope
    diff = _prompt_and_decode_logits(path) - _prompt_and_decode_logits(tiny_model_dir(arch, rope_parameters=rope))
    assert diff.abs().max().item() <= 1e-5


TEXTS = ("Hello world, this is a test.", "  two spaces\nand a newline", "unicode: héllo ✓ 中文 🙂")


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_and_chat_template_come_from_the_gguf(arch):
    path = tiny_gguf_path(arch)
    ours, ref = get_tokenizer(path), get_tokenizer(tiny_model_dir(arch))
    assert os.path.dirname(path) and not os.path.exists(os.path.join(os.path.dirname(path), "tokenizer.json"))
    for text in TEXTS:
        assert ours(text).input_ids == ref(text).input_ids
        assert ours.decode(ours(text).input_ids, skip_special_tokens=True) == text
    assert ours.chat_template == ref.chat_template and ours.chat_template
    turns = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": "Bye"}]
    assert ours.apply_chat_template(turns, tokenize=False, add_generation_prompt=True) == \
        ref.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    assert (ours.bos_token, ours.eos_token, ours.pad_token) == (ref.bos_token, ref.eos_token, ref.pad_token)
