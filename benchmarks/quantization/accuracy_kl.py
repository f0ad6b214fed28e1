"""Accuracy of weight quantization on a real model: mean KL divergence of the next-token
distributions from the unquantized model's, over a fixed prompt set, on the CPU.

    python benchmarks/quantization/accuracy_kl.py [--out benchmarks/results/quantization_kl_smollm2.json]

Model: SmolLM2-135M-Instruct (`sglang.testing.smollm2_gguf_path()`, a Q4_1 GGUF dequantized into
float32 at load: that float32 model is the reference). Variants: online FP8 (`--quantization fp8`:
per-channel FP8 weights, FP8 per-token activations) and INT4 round-to-nearest, group 128 (AWQ's
layout, no calibration). Prompts: the first 24 chat questions of the CPU benchmark through the
model's chat template, plus a plain-text passage; every position's next-token distribution counts.
Reports mean KL(ref || quantized) in nats, top-1 agreement, and linear-layer weight bytes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))  # run from anywhere in the repo

from benchmarks.cpu.chat_prompts import PASSAGE, QUESTIONS  # noqa: E402
from sglang.runtime.layers.linear import LinearBase  # noqa: E402
from sglang.runtime.layers.quantization.rtn import quantize_model_int4_rtn  # noqa: E402
from sglang.runtime.models.loader import load_model  # noqa: E402
from sglang.runtime.models.model_config import ModelConfig  # noqa: E402
from sglang.runtime.utils import get_tokenizer  # noqa: E402
from sglang.testing import smollm2_gguf_path  # noqa: E402
from tests.models.harness import KVHarness  # noqa: E402


def prompt_ids(path: str, n_questions: int) -> List[List[int]]:
    tok = get_tokenizer(path)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True)
               for q in QUESTIONS[:n_questions]]
    prompts = [list(p["input_ids"]) if isinstance(p, dict) or hasattr(p, "keys") else list(p) for p in prompts]
    prompts.append(tok.encode(PASSAGE)[:256])
    return prompts


def log_probs(model, mc: ModelConfig, prompts: List[List[int]]) -> torch.Tensor:
    out = []
    for ids in prompts:  # one request per pass keeps the pool small
        h = KVHarness.for_config(model, mc, max_context=len(ids) + 8, pool_size=len(ids) + 8)
        row = h.new_request()
        out.append(torch.log_softmax(h.extend([row], [ids], return_logprob=True).input_logits.float(), dim=-1))
    return torch.cat(out)


def linear_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for m in model.modules() if isinstance(m, LinearBase)
               for p in m.parameters())


def compare(ref: torch.Tensor, got: torch.Tensor) -> Dict[str, float]:
    kl = (ref.exp() * (ref - got)).sum(dim=-1)
    return {"mean_kl_nats": kl.mean().item(), "max_kl_nats": kl.max().item(),
            "top1_agreement": (ref.argmax(-1) == got.argmax(-1)).float().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--out", default=f"benchmarks/results/quantization_kl_smollm2_{datetime.date.today()}.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    path = smollm2_gguf_path()
    mc = ModelConfig(path, dtype="float32")
    prompts = prompt_ids(path, args.questions)
    ref_model = load_model(mc)
    ref = log_probs(ref_model, mc, prompts)
    results = {"reference": {"linear_weight_bytes": linear_bytes(ref_model)}}
    variants = {"fp8_online_w8a8": lambda: load_model(mc, quantization="fp8"), "int4_rtn_g128": lambda: _int4(mc)}
    for name, build in variants.items():
        start = time.perf_counter()
        model = build()
        got = log_probs(model, mc, prompts)
        results[name] = {**compare(ref, got), "linear_weight_bytes": linear_bytes(model),
                         "seconds": round(time.perf_counter() - start, 1)}
        print(name, results[name], flush=True)
    record = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32 = reference)",
              "device": "cpu", "positions": int(ref.shape[0]), "prompts": len(prompts),
              "command": "python benchmarks/quantization/accuracy_kl.py", "torch": torch.__version__,
              "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print("wrote", args.out)


def _int4(mc: ModelConfig):
    model = load_model(mc)
    quantize_model_int4_rtn(model, 128)
    return model


if __name__ == "__main__":
    main()
