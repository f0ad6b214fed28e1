"""Tiny random PEFT LoRA adapters for tests and benchmarks, and transformers + peft references.

`write_peft_adapter` uses peft itself (the real on-disk layout); `write_dummy_adapter` writes the
same layout without peft or a base checkpoint, from a config's shapes (benchmarks with --load-format
dummy).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import torch

ALL_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_peft_adapter(base_dir: str, out_dir: str, r: int = 4, alpha: float = 8.0, seed: int = 0,
                       targets: Sequence[str] = ALL_TARGETS, use_rslora: bool = False, std: float = 0.1) -> str:
    """A random LoRA adapter for the checkpoint at `base_dir`, saved by peft into `out_dir`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if os.path.isfile(os.path.join(out_dir, "adapter_model.safetensors")):
        return out_dir
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none",
                     use_rslora=use_rslora, task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # peft starts B at zero: randomize both so the adapter matters
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def peft_merged_model(base_dir: str, adapter_dir: str):
    """transformers model with the adapter merged into its weights (float32, eval)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().eval()


@torch.inference_mode()
def reference_logprobs(model, ids: List[int]) -> torch.Tensor:
    """[len(ids), vocab] log-softmax of the logits at every position."""
    logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def _proj_shapes(cfg: dict) -> Dict[str, tuple]:
    """(in, out) of each projection of a Llama-style config."""
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or h // heads
    kv = cfg.get("num_key_value_heads") or heads
    inter = cfg["intermediate_size"]
    return {"q_proj": (h, heads * head_dim), "k_proj": (h, kv * head_dim), "v_proj": (h, kv * head_dim),
            "o_proj": (heads * head_dim, h), "gate_proj": (h, inter), "up_proj": (h, inter),
            "down_proj": (inter, h)}


def write_dummy_adapter(config: dict, out_dir: str, r: int = 16, alpha: Optional[float] = None, seed: int = 0,
                        targets: Sequence[str] = ALL_TARGETS, std: float = 0.01) -> str:
    """A random adapter in PEFT's layout for a base model of `config` (its config.json as a dict)."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    shapes = _proj_shapes(config)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(config["num_hidden_layers"]):
        for proj in targets:
            part = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            stem = f"base_model.model.model.layers.{layer}.{part}.{proj}"
            fan_in, fan_out = shapes[proj]
            tensors[f"{stem}.lora_A.weight"] = torch.randn(r, fan_in, generator=gen) * std
            tensors[f"{stem}.lora_B.weight"] = torch.randn(fan_out, r, generator=gen) * std
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()},
              os.path.join(out_dir, "adapter_model.safetensors"))
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": r, "lora_alpha": alpha or 2 * r, "target_modules": list(targets),
                   "bias": "none", "task_type": "CAUSAL_LM"}, f)
    return out_dir
