"""Reference results from Hugging Face transformers, for fidelity tests."""

from __future__ import annotations

from functools import lru_cache
from typing import List

import torch


@lru_cache(maxsize=4)
def hf_model(model_path: str, dtype: str = "float32", device: str = "cpu"):
    from transformers import AutoModelForCausalLM

    from sglang.runtime.models.gguf.files import pretrained_source

    source, gguf_kwargs = pretrained_source(model_path)  # a GGUF file loads as (its dir, gguf_file=name)
    # eager: some transformers versions drop Gemma 2 attention soft-capping under SDPA
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), attn_implementation="eager",
                                                 **gguf_kwargs)
    return model.to(device).eval()


@torch.inference_mode()
def hf_greedy(model_path: str, prompts: List[List[int]], max_new_tokens: int, dtype: str = "float32",
              device: str = "cpu") -> List[List[int]]:
    """Greedy continuation of each prompt, one prompt at a time (no padding effects), EOS ignored."""
    model = hf_model(model_path, dtype, device)
    outs = []
    for ids in prompts:
        x = torch.tensor([ids], device=device)
        gen = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             min_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
        outs.append(gen[0, len(ids):].tolist())
    return outs


@torch.inference_mode()
def hf_prompt_logprobs(model_path: str, ids: List[int], dtype: str = "float32", device: str = "cpu") -> List[float]:
    """logprob of token i given tokens < i, for i = 1 .. len(ids) - 1."""
    model = hf_model(model_path, dtype, device)
    logits = model(torch.tensor([ids], device=device)).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
