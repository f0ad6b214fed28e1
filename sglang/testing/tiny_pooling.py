"""Tiny random pooling checkpoints: embedding backbones and sequence-classification (reward) heads.

    python -m sglang.testing.tiny_pooling --arch llama --head embedding --pooling mean --out DIR
    python -m sglang.testing.tiny_pooling --arch qwen2 --head seqcls --num-labels 3 --out DIR

`embedding` writes what e5-mistral / gte-Qwen2 style checkpoints hold: the backbone alone
(`LlamaModel` / `MistralModel` / `Qwen2Model`, tensor names without `model.`) and a
sentence-transformers config (modules.json, 1_Pooling/config.json, a Normalize module unless
`normalize=False`; `pooling=None` writes no sentence-transformers files). `seqcls` writes a
`*ForSequenceClassification` checkpoint with a random `score` head. Both start from the tiny
causal checkpoint of `sglang.testing.tiny_model` (same tokenizer, same backbone weights).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional, Sequence

import torch

from sglang.testing.tiny_model import (
    arch_spec,
    build_model,
    config_json_dict,
    save_weights,
    tiny_config,
    write_generation_config,
)
from sglang.testing.tokenizer_factory import write_json, write_tokenizer

HEADS = ("embedding", "seqcls")
POOLING_ARCHES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}
_ST_MODES = {"last": "pooling_mode_lasttoken", "mean": "pooling_mode_mean_tokens"}
SCORE_STD = 0.3


def write_sentence_transformers_config(out_dir: str, hidden_size: int, pooling: str, normalize: bool) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        os.makedirs(os.path.join(out_dir, "2_Normalize"), exist_ok=True)
    write_json(os.path.join(out_dir, "modules.json"), modules)
    os.makedirs(os.path.join(out_dir, "1_Pooling"), exist_ok=True)
    flags = {f"pooling_mode_{m}": False for m in ("cls_token", "mean_tokens", "max_tokens",
                                                     "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")}
    flags[_ST_MODES[pooling]] = True
    write_json(os.path.join(out_dir, "1_Pooling", "config.json"), {"word_embedding_dimension": hidden_size, **flags})


def make_tiny_pooling_checkpoint(arch: str, out_dir: str, head: str = "embedding", seed: int = 0,
                                 pooling: Optional[str] = "last", normalize: bool = True, num_labels: int = 1,
                                 **config_overrides: Any) -> str:
    """Write a tiny pooling checkpoint of family `arch` (llama, mistral, qwen2) into `out_dir`."""
    if arch not in POOLING_ARCHES:
        raise ValueError(f"pooling checkpoints exist for {sorted(POOLING_ARCHES)}, not {arch!r}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    spec = arch_spec(arch)
    os.makedirs(out_dir, exist_ok=True)
    max_len = int(config_overrides.get("max_position_embeddings", 1024))
    ids = write_tokenizer(spec.tokenizer_family(arch), out_dir, model_max_length=max_len)
    causal = build_model(tiny_config(arch, ids, **config_overrides), seed, spec.init, ids.stop_ids)
    family = POOLING_ARCHES[arch]
    if head == "embedding":
        architecture = f"{family}Model"
        tensors = {k: v.detach().clone() for k, v in causal.model.state_dict().items()}
    else:
        architecture = f"{family}ForSequenceClassification"
        tensors = {f"model.{k}": v.detach().clone() for k, v in causal.model.state_dict().items()}
        gen = torch.Generator().manual_seed(seed + 1)
        tensors["score.weight"] = torch.randn(num_labels, causal.config.hidden_size, generator=gen) * SCORE_STD
    config = tiny_config(arch, ids, **config_overrides)
    config.architectures = [architecture]
    if head == "seqcls":
        config.num_labels = num_labels
    save_weights(tensors, out_dir)
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(config))
    write_generation_config(out_dir, ids)
    if head == "embedding" and pooling is not None:
        write_sentence_transformers_config(out_dir, config.hidden_size, pooling, normalize)
    return out_dir


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sglang.testing.tiny_pooling",
                                     description="Write a tiny random embedding or reward checkpoint.")
    parser.add_argument("--arch", required=True, choices=sorted(POOLING_ARCHES))
    parser.add_argument("--head", default="embedding", choices=HEADS)
    parser.add_argument("--pooling", default="last", choices=("last", "mean", "none"),
                        help="sentence-transformers pooling written with --head embedding ('none': no modules.json)")
    parser.add_argument("--no-normalize", action="store_true", help="leave out the Normalize module")
    parser.add_argument("--num-labels", type=int, default=1, help="score head outputs (--head seqcls)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pooling = None if args.pooling == "none" else args.pooling
    print(make_tiny_pooling_checkpoint(args.arch, args.out, args.head, args.seed, pooling,
                                       not args.no_normalize, args.num_labels))


if __name__ == "__main__":
    main()
