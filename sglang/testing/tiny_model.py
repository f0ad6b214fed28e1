"""Tiny random Hugging Face checkpoints for tests, examples and demos.

`make_tiny_checkpoint("llama", dir)` writes config.json, safetensors weights (optionally sharded
with an index), a trained byte-level BPE tokenizer with the family's chat template, and
generation_config.json. transformers loads the result with `from_pretrained(dir)`.

Weights come from the transformers model class itself (so names and shapes are exactly HF's) and
are then re-initialised with larger scales: HF's default init (std 0.02) gives near-uniform
logits whose greedy argmax flips on rounding noise, which makes "ours == HF" tests flaky.

CLI: python -m sglang.testing.tiny_model --arch llama --out DIR [--seed N] [--shards K]
     python -m sglang.testing.tiny_model --shape llama-3-8b --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence

import torch
import transformers
from safetensors.torch import save_file

from sglang.testing.tiny_vlm import VLM_BUILDERS, make_tiny_vlm
from sglang.testing.tokenizer_factory import TokenizerIds, write_json, write_tokenizer

SAFETENSORS_INDEX = "model.safetensors.index.json"

# Parameters are perturbed around their defaults so a runtime that ignores them is caught.
NORM_NOISE_STD = 0.1
BIAS_STD = 0.1
# Stop-token rows of the output projection are shrunk so the model rarely stops at once.
STOP_ROW_SCALE = 0.25


@dataclass(frozen=True)
class InitScales:
    """Random-init scales, chosen empirically so greedy top-1/top-2 logit gaps are wide while
    outputs still vary with the prompt (numbers in tests/unit/test_tiny_model.py)."""

    embed_std: float = 1.0
    linear_std: float = 0.3
    post_norm_offset: float = 0.0  # added to post_* norm weights (Gemma 2's block outputs)
    final_norm_offset: float = 0.0  # added to the final norm weight


# Gemma 2 multiplies embeddings by sqrt(hidden) and normalises each block's output, so with
# tied embeddings the current token's own embedding dominates and the model just repeats it.
# Smaller embeddings and louder block outputs restore prompt-dependent, peaky predictions.
GEMMA2_INIT = InitScales(embed_std=0.2, post_norm_offset=8.0, final_norm_offset=1.0)


@dataclass(frozen=True)
class ArchSpec:
    """How one architecture family is configured."""

    model_type: str
    architecture: str  # transformers class name, also written to config.json "architectures"
    tie_word_embeddings: bool
    extra: Mapping[str, Any]  # family-specific config fields
    init: InitScales = InitScales()
    tokenizer: Optional[str] = None  # tokenizer_factory family when not the arch's own name
    # transformers 5 fuses some tensors in memory (MoE experts into one [E, ...] tensor) and
    # splits them again on save: write what hub checkpoints hold (per-expert tensors).
    hub_layout: bool = False

    def tokenizer_family(self, arch: str) -> str:
        return self.tokenizer or arch


_MLA_DIMS: Mapping[str, Any] = MappingProxyType({
    "num_key_value_heads": 4, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
    "v_head_dim": 16, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2,
    "moe_intermediate_size": 32, "first_k_dense_replace": 1,
})

ARCHES: Mapping[str, ArchSpec] = MappingProxyType({
    "llama": ArchSpec("llama", "LlamaForCausalLM", False, MappingProxyType({})),
    "mistral": ArchSpec("mistral", "MistralForCausalLM", False,
                        MappingProxyType({"sliding_window": None})),
    "qwen2": ArchSpec("qwen2", "Qwen2ForCausalLM", True, MappingProxyType({})),
    "qwen3": ArchSpec("qwen3", "Qwen3ForCausalLM", False, MappingProxyType({})),
    "gemma2": ArchSpec("gemma2", "Gemma2ForCausalLM", True, MappingProxyType({
        # Small window so 30+ token prompts actually exercise sliding-window attention.
        "sliding_window": 8,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "hidden_activation": "gelu_pytorch_tanh",
    }), GEMMA2_INIT),
    # Phi-3 stores fused qkv_proj / gate_up_proj tensors; a Llama-2-style tokenizer.
    "phi3": ArchSpec("phi3", "Phi3ForCausalLM", False, MappingProxyType({"sliding_window": None}),
                     tokenizer="mistral"),
    # Mixture-of-experts families: 8 experts, 2 per token (config field names are each family's).
    "mixtral": ArchSpec("mixtral", "MixtralForCausalLM", False, MappingProxyType({
        "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": None,
    }), tokenizer="mistral", hub_layout=True),
    "qwen2_moe": ArchSpec("qwen2_moe", "Qwen2MoeForCausalLM", False, MappingProxyType({
        "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 96, "norm_topk_prob": False,
    }), tokenizer="qwen2", hub_layout=True),
    "qwen3_moe": ArchSpec("qwen3_moe", "Qwen3MoeForCausalLM", False, MappingProxyType({
        "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": True,
    }), tokenizer="qwen2", hub_layout=True),
    # Multi-head latent attention (every head sees all kv: num_key_value_heads = heads) and
    # mixture-of-experts from layer 1 on, with shared experts. V2 as V2-Lite: no q latent.
    "deepseek_v2": ArchSpec("deepseek_v2", "DeepseekV2ForCausalLM", False, MappingProxyType({
        **_MLA_DIMS, "q_lora_rank": None, "topk_method": "group_limited_greedy", "n_shared_experts": 2,
        "norm_topk_prob": False, "routed_scaling_factor": 1.0,
    }), tokenizer="llama", hub_layout=True),
    "deepseek_v3": ArchSpec("deepseek_v3", "DeepseekV3ForCausalLM", False, MappingProxyType({
        **_MLA_DIMS, "q_lora_rank": 48, "n_shared_experts": 1, "norm_topk_prob": True,
        "routed_scaling_factor": 2.5,
    }), tokenizer="llama", hub_layout=True),
})

TINY_DIMS: Mapping[str, Any] = MappingProxyType({
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
})


def arch_spec(arch: str) -> ArchSpec:
    """Return the spec of `arch`, or raise naming the supported ones."""
    try:
        return ARCHES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHES)}") from None


def _derived_fields(arch: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Fields that depend on others (so overriding hidden size or layer count stays consistent)."""
    out: dict[str, Any] = {}
    head_dim = fields.get("head_dim") or fields["hidden_size"] // fields["num_attention_heads"]
    if "qk_rope_head_dim" in fields:  # latent attention: transformers' head_dim is the rope part
        head_dim = fields["qk_rope_head_dim"]
    out["head_dim"] = head_dim
    if arch == "gemma2":
        out["query_pre_attn_scalar"] = fields.get("query_pre_attn_scalar", head_dim)
        out["layer_types"] = fields.get("layer_types") or [
            "sliding_attention" if i % 2 == 0 else "full_attention"
            for i in range(fields["num_hidden_layers"])
        ]
    return out


def tiny_config(arch: str, ids: TokenizerIds, **overrides: Any) -> transformers.PretrainedConfig:
    """Build the transformers config of a tiny `arch` model for a tokenizer with `ids`."""
    spec = arch_spec(arch)
    fields: dict[str, Any] = {
        **TINY_DIMS,
        **spec.extra,
        "vocab_size": ids.vocab_size,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "bos_token_id": ids.bos_id,
        "eos_token_id": list(ids.stop_ids) if len(ids.stop_ids) > 1 else ids.eos_id,
        "pad_token_id": ids.pad_id,
        **overrides,
    }
    if fields["vocab_size"] < ids.vocab_size:
        raise ValueError(f"vocab_size={fields['vocab_size']} is smaller than the tokenizer "
                         f"({ids.vocab_size} tokens); use a value >= {ids.vocab_size}")
    fields.update(_derived_fields(arch, fields))
    return transformers.AutoConfig.for_model(
        spec.model_type, architectures=[spec.architecture], dtype="float32", **fields
    )


def _norm_offset(name: str, scales: InitScales) -> float:
    if name == "model.norm.weight":
        return scales.final_norm_offset
    # Only Gemma 2 sets post_norm_offset; there post_* norms scale each block's output.
    return scales.post_norm_offset if name.rsplit(".", 2)[-2].startswith("post_") else 0.0


def _reinit_(model: torch.nn.Module, seed: int, scales: InitScales, stop_ids: Sequence[int]) -> None:
    """Re-draw every parameter from a seeded generator with peaky-logit scales, in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():  # tied weights are visited once
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if "norm" in name.rsplit(".", 2)[-2]:
                param.add_(noise * NORM_NOISE_STD + _norm_offset(name, scales))
            elif name.endswith(".bias"):
                param.copy_(noise * BIAS_STD)
            elif "embed_tokens" in name:
                param.copy_(noise * scales.embed_std)
            else:
                param.copy_(noise * scales.linear_std)
        for name, buf in model.named_buffers():  # DeepSeek-V3's routing bias: zeros would test nothing
            if name.endswith("e_score_correction_bias"):
                buf.copy_(torch.randn(buf.shape, generator=gen) * BIAS_STD)
        out_rows = model.get_output_embeddings().weight
        out_rows[list(stop_ids)] *= STOP_ROW_SCALE


def build_model(config: transformers.PretrainedConfig, seed: int,
                scales: InitScales = InitScales(), stop_ids: Sequence[int] = ()) -> torch.nn.Module:
    """Instantiate the HF model for `config` with deterministic, peaky random weights."""
    model_cls = getattr(transformers, config.architectures[0])
    # fork_rng: the caller's global RNG stream must not change because a checkpoint was built.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    _reinit_(model, seed, scales, stop_ids)
    return model.float().eval()


def _hub_layout(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict as hub checkpoints store it: transformers 5 keeps some families' tensors
    fused in memory (MoE experts as one [E, ...] tensor) and splits them again on save."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # transformers 4 holds hub names in memory
        return state
    return revert_weight_conversion(model, state)


def _state_dict_to_save(model: torch.nn.Module, tied: bool, hub_layout: bool = False) -> dict[str, torch.Tensor]:
    state = _hub_layout(model, dict(model.state_dict())) if hub_layout else model.state_dict()
    tensors = {k: v.detach().contiguous().clone() for k, v in state.items()}
    if tied:
        tensors.pop("lm_head.weight", None)  # HF omits the tied copy; loaders re-tie it
    return tensors


def _split_names(names: list[str], shards: int) -> list[list[str]]:
    """Contiguous, non-empty, count-balanced groups (deterministic)."""
    if not 1 <= shards <= len(names):
        raise ValueError(f"shards={shards} must be between 1 and the number of tensors ({len(names)})")
    base, extra = divmod(len(names), shards)
    groups, start = [], 0
    for i in range(shards):
        end = start + base + (1 if i < extra else 0)
        groups.append(names[start:end])
        start = end
    return groups


def save_weights(tensors: dict[str, torch.Tensor], out_dir: str, shards: int = 1) -> list[str]:
    """Write safetensors file(s) (+ index when sharded); return the file names written."""
    meta = {"format": "pt"}
    if shards == 1:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata=meta)
        return ["model.safetensors"]
    weight_map: dict[str, str] = {}
    files = []
    for i, group in enumerate(_split_names(list(tensors), shards), start=1):
        fname = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k] for k in group}, os.path.join(out_dir, fname), metadata=meta)
        weight_map.update({k: fname for k in group})
        files.append(fname)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    write_json(os.path.join(out_dir, SAFETENSORS_INDEX),
               {"metadata": {"total_size": total}, "weight_map": weight_map})
    return files


def config_json_dict(config: transformers.PretrainedConfig) -> dict[str, Any]:
    """config.json contents: transformers' own fields plus the legacy keys hub checkpoints carry
    (`rope_theta`, `rope_scaling`, `torch_dtype`), so readers of either convention work."""
    data = config.to_diff_dict()
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if "rope_theta" in rope:
        data.setdefault("rope_theta", rope["rope_theta"])
    if rope.get("rope_type", "default") != "default":
        data.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
    data.setdefault("torch_dtype", str(data.get("dtype", "float32")))
    return data


def write_generation_config(out_dir: str, ids: TokenizerIds) -> None:
    """generation_config.json: every stop token as eos_token_id (transformers stops on any)."""
    eos: Any = list(ids.stop_ids) if len(ids.stop_ids) > 1 else ids.eos_id
    data = {"bos_token_id": ids.bos_id, "eos_token_id": eos, "pad_token_id": ids.pad_id}
    write_json(os.path.join(out_dir, "generation_config.json"),
               {k: v for k, v in data.items() if v is not None})


def make_tiny_checkpoint(arch: str, out_dir: str, seed: int = 0, shards: int = 1,
                         **config_overrides: Any) -> str:
    """Write a tiny random HF checkpoint of family `arch` into `out_dir`; return `out_dir`.

    Same (arch, seed, shards, overrides) -> byte-identical files. `config_overrides` are
    transformers config fields (e.g. num_hidden_layers=4, sliding_window=16)."""
    spec = arch_spec(arch)  # fail on a bad name before writing anything
    os.makedirs(out_dir, exist_ok=True)
    max_len = int(config_overrides.get("max_position_embeddings", TINY_DIMS["max_position_embeddings"]))
    ids = write_tokenizer(spec.tokenizer_family(arch), out_dir, model_max_length=max_len)
    config = tiny_config(arch, ids, **config_overrides)
    model = build_model(config, seed, spec.init, ids.stop_ids)
    save_weights(_state_dict_to_save(model, config.tie_word_embeddings, spec.hub_layout), out_dir, shards)
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(config))
    write_generation_config(out_dir, ids)
    return out_dir


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"override {text!r} must look like key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def shape_names() -> list[str]:
    from sglang.testing.shapes import SHAPES  # shapes imports this module: not at top

    return list(SHAPES)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sglang.testing.tiny_model",
                                     description="Write a tiny random HF checkpoint or a real-shape config.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--arch", choices=sorted(ARCHES) + sorted(VLM_BUILDERS),
                      help="tiny random checkpoint family (text, or vision-language)")
    what.add_argument("--shape", choices=sorted(shape_names()), metavar="SHAPE",
                      help="real model shape (config + tokenizer, no weights), for --load-format "
                           "dummy benchmarks; one of: %(choices)s")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        type=_parse_override, metavar="KEY=VALUE",
                        help="config override, JSON value (repeatable), e.g. --set num_hidden_layers=4")
    args = parser.parse_args(argv)
    if args.shape:
        from sglang.testing.shapes import write_shape_config  # imports this module: not at top

        print(write_shape_config(args.shape, args.out))
    elif args.arch in VLM_BUILDERS:
        print(make_tiny_vlm(args.arch, args.out, args.seed, **dict(args.overrides)))
    else:
        print(make_tiny_checkpoint(args.arch, args.out, args.seed, args.shards, **dict(args.overrides)))


if __name__ == "__main__":
    main()
