"""Grammar-mask microbenchmark (CPU): the allowed-token mask for a batch of 32 constrained requests.

Each backend compiles one JSON schema and one regex; 32 requests are advanced to different
points of a random walk (so rows sit in different states), then we time:
- per_row: `fill_allowed_mask` into each row of a [32, V] bool tensor (what a simple loop does);
- batched: `build_allowed_token_mask` (one packed bitmask + one unpack for xgrammar rows);
- cold_compile (fsm only): compiling a fresh RegexFSM plus its start state's token index, i.e. work
  that is amortised afterwards (cached per (regex, tokenizer); other states are built on first use).
Median of `--repeats` runs, microseconds. The tokenizer is the tiny test one (1000 tokens) unless
`--model` names a local Hugging Face checkpoint directory.

    PYTHONPATH=. python benchmarks/constrained/bench_mask.py [--model DIR] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Callable, List

import torch
from transformers import AutoTokenizer

from sglang.runtime.constrained.base_grammar import BaseGrammarObject
from sglang.runtime.constrained.batch_mask import build_allowed_token_mask
from sglang.runtime.constrained.registry import create_backend

SCHEMA = json.dumps({
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 16},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
})
REGEX = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]): [A-Za-z ]{1,40}\."


def _median_us(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (index construction, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _advanced_batch(template: BaseGrammarObject, batch: int, vocab: int, seed: int) -> List[BaseGrammarObject]:
    """`batch` copies, copy i advanced by a random walk of i % 12 tokens."""
    rng = random.Random(seed)
    mask = torch.zeros(vocab, dtype=torch.bool)
    out = []
    for i in range(batch):
        grammar = template.copy()
        for _ in range(i % 12):
            grammar.fill_allowed_mask(mask)
            choices = mask.nonzero().flatten().tolist()
            if grammar.is_terminated() or not choices:
                break
            grammar.accept_token(rng.choice(choices))
        out.append(grammar)
    return out


def bench_backend(name: str, tokenizer, vocab: int, batch: int, repeats: int) -> dict:
    backend = create_backend(name, tokenizer, vocab, eos_token_ids={tokenizer.eos_token_id})
    results = {}
    for label, kind, spec in (("json", "json", SCHEMA), ("regex", "regex", REGEX)):
        grammars = _advanced_batch(backend.compile(kind, spec), batch, vocab, seed=0)
        rows = torch.zeros(batch, vocab, dtype=torch.bool)

        def per_row() -> None:
            for i, grammar in enumerate(grammars):
                grammar.fill_allowed_mask(rows[i])

        results[f"{label}_per_row_us"] = round(_median_us(per_row, repeats), 1)
        results[f"{label}_batched_us"] = round(_median_us(lambda: build_allowed_token_mask(grammars, vocab), repeats), 1)
        if name == "fsm":
            results[f"{label}_cold_compile_us"] = round(_cold_fsm_us(tokenizer, vocab, kind, spec), 1)
    return results


def _cold_fsm_us(tokenizer, vocab: int, kind: str, spec: str) -> float:
    backend = create_backend("fsm", tokenizer, vocab, eos_token_ids={tokenizer.eos_token_id})
    start = time.perf_counter()
    backend.compile(kind, spec)  # builds the start state's token index
    return (time.perf_counter() - start) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint dir with a tokenizer (default: tiny llama)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    if args.model is None:
        from sglang.testing.fixtures import tiny_model_dir

        args.model = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    vocab = len(tokenizer)
    torch.set_num_threads(1)  # the scheduler fills masks on its own thread
    print(f"tokenizer vocab {vocab}, batch {args.batch}, median of {args.repeats} (microseconds)")
    for name in ("fsm", "xgrammar"):
        print(name, bench_backend(name, tokenizer, vocab, args.batch, args.repeats))


if __name__ == "__main__":
    main()
