"""Fit a small EAGLE-1 head for a served model on the CPU (there is no published head for
SmolLM2), so EAGLE's acceptance can be measured with real weights.

    PYTHONPATH=. python benchmarks/speculative/fit_eagle_head.py --out /tmp/smollm2-eagle [--epochs 3]

The target (default: the cached SmolLM2-135M-Instruct GGUF, dequantized by transformers) reads a
text corpus; its final normed hidden states are the features. The corpus: with `--self-distill N`
(as EAGLE trains on the target's own answers), N chat requests built from this repository's docs
paragraphs and Python functions with copy_workload.py's four instructions, answered greedily by
our Engine (prompt + answer); the benchmark's own passages and code are never used. Otherwise raw
text of `--corpus-glob`. The head (sglang.testing.tiny_eagle.EagleOneTwin: fc + one Llama layer without
input norm) learns feature t + 1 from (token t + 1, feature t) with a smooth-L1 loss, plus a
cross-entropy term through the target's frozen lm_head on token t + 2 (EAGLE's recipe, small).
The result is written in the EAGLE-1 checkpoint layout (config.json + model.safetensors).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from typing import List, Optional

import torch


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None, help="GGUF file or checkpoint dir (default: cached SmolLM2 GGUF)")
    p.add_argument("--out", required=True)
    p.add_argument("--corpus-glob", nargs="*", default=["docs/*.md", "sglang/**/*.py", "benchmarks/**/*.py"])
    p.add_argument("--self-distill", type=int, default=0, help="chat requests answered by the target (0: raw text)")
    p.add_argument("--answer-tokens", type=int, default=160)
    p.add_argument("--max-tokens", type=int, default=100_000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ce-weight", type=float, default=0.1)
    p.add_argument("--ce-every", type=int, default=8, help="cross-entropy on every n-th position (the vocabulary "
                   "projection dominates the cost)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return p.parse_args(argv)


def load_target(path: str):
    from transformers import AutoModelForCausalLM

    if path.endswith(".gguf"):
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                     dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval()


def raw_text_ids(tokenizer, patterns: List[str], max_tokens: int) -> List[int]:
    ids: List[int] = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            with open(path, encoding="utf-8", errors="replace") as f:
                ids.extend(tokenizer.encode(f.read(), add_special_tokens=False))
            if len(ids) >= max_tokens:
                return ids
    return ids


def distill_requests(n: int) -> List[str]:
    """Copy-style requests over this repository's docs paragraphs and Python functions."""
    import re

    paragraphs = [p.strip() for path in sorted(glob.glob("docs/*.md"))
                  for p in open(path, encoding="utf-8").read().split("\n\n")
                  if 200 <= len(p.strip()) <= 700 and not p.lstrip().startswith(("|", "```", "#", "<!--"))]
    functions = [m.group(0) for path in sorted(glob.glob("sglang/**/*.py", recursive=True))
                 for m in re.finditer(r"(?m)^def [\s\S]{150,600}?\n(?=\S)", open(path, encoding="utf-8").read())]
    out = []
    for i in range(n):
        if i % 2 == 0:
            text = paragraphs[(i // 2) % len(paragraphs)]
            out.append([f"Rewrite the following passage exactly, changing nothing:\n\n{text}",
                        f"Repeat this text word for word, then stop:\n\n{text}"][(i // 2) % 2])
        else:
            code = functions[(i // 2) % len(functions)]
            out.append([f"Rename the variable `x` to `value` in this code and return the whole code block:\n\n```python\n{code}```",
                        f"Add a docstring to each function and return the complete code:\n\n```python\n{code}```"][(i // 2) % 2])
    return out


def self_distilled_ids(path: str, tokenizer, n: int, answer_tokens: int) -> List[int]:
    import sglang

    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": m}], tokenize=False,
                                             add_generation_prompt=True) for m in distill_requests(n)]
    with sglang.Engine(model_path=path, device="cpu", random_seed=0) as eng:
        outs = eng.generate(prompts, {"max_new_tokens": answer_tokens, "temperature": 0})
    ids: List[int] = []
    for prompt, out in zip(prompts, outs):
        ids.extend(tokenizer.encode(prompt + out["text"], add_special_tokens=False))
    return ids


def chunked(ids: List[int], max_tokens: int, seq_len: int) -> torch.Tensor:
    n = min(len(ids), max_tokens) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


@torch.no_grad()
def features(target, chunks: torch.Tensor, batch: int) -> torch.Tensor:
    out = []
    for i in range(0, len(chunks), batch):
        out.append(target.model(input_ids=chunks[i:i + batch]).last_hidden_state)  # final normed, no logits
    return torch.cat(out)


def main(argv: Optional[List[str]] = None) -> int:
    from safetensors.torch import save_file

    from sglang.runtime.utils import get_tokenizer
    from sglang.testing.models import smollm2_gguf_path
    from sglang.testing.tiny_eagle import EagleOneTwin, _head_config

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.model_path or smollm2_gguf_path()
    tokenizer = get_tokenizer(path)
    start = time.time()
    if args.self_distill:
        ids = self_distilled_ids(path, tokenizer, args.self_distill, args.answer_tokens)
        print(f"{args.self_distill} answers in {time.time() - start:.0f} s", flush=True)
    else:
        ids = raw_text_ids(tokenizer, args.corpus_glob, args.max_tokens)
    chunks = chunked(ids, args.max_tokens, args.seq_len)
    target = load_target(path)
    feats = features(target, chunks, args.batch)
    print(f"{chunks.numel()} tokens, features in {time.time() - start:.0f} s", flush=True)
    twin = EagleOneTwin(target.config, target.get_input_embeddings().weight)
    lm_head = target.get_output_embeddings()
    for p in lm_head.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(twin.parameters(), lr=args.lr, weight_decay=0.0)
    steps = args.epochs * ((len(chunks) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        order = torch.randperm(len(chunks), generator=gen)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(chunks), args.batch):
            idx = order[i:i + args.batch]
            tok, f = chunks[idx], feats[idx]
            pred = twin(tok[:, 1:], f[:, :-1])  # predicts feature t + 1
            loss = torch.nn.functional.smooth_l1_loss(pred, f[:, 1:])
            logits = lm_head(pred[:, :-1:args.ce_every])  # scores token t + 2
            want = tok[:, 2::args.ce_every]
            loss = loss + args.ce_weight * torch.nn.functional.cross_entropy(logits.flatten(0, 1), want.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += (logits.argmax(-1) == want).sum().item()
            seen += want.numel()
        print(f"epoch {epoch}: loss {total / len(chunks):.4f}, next-next token top-1 {correct / seen:.3f}, "
              f"{time.time() - start:.0f} s", flush=True)
    os.makedirs(args.out, exist_ok=True)
    save_file(twin.published_tensors(), os.path.join(args.out, "model.safetensors"))
    with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(_head_config(target.config.to_dict(), "eagle"), f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
