"""Per-step mask time of the lark grammar backend vs xgrammar on EBNF grammars (CPU).

For each grammar, random walks sample only tokens the lark mask allows; every step times
`fill_allowed_mask` of both backends on the same state. "cold" is the first walk on a fresh
backend (lark builds each state's mask on first visit), "warm" repeats the same walks (lark's
per-state cache hits; xgrammar has its own caches). Median, mean and max microseconds per step. The tokenizer
is the tiny test one unless `--tokenizer` names a local tokenizer directory or a GGUF file (e.g. the
real SmolLM2 vocabulary: the synthetic shape tokenizers are random byte-level merges, 71% of the
128k llama-3-8b shape's tokens are not whole UTF-8 text, which real vocabularies rarely have).

    PYTHONPATH=. python benchmarks/constrained/bench_lark_mask.py [--tokenizer DIR] [--walks 4]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Dict, List

import torch
from sglang.runtime.constrained.registry import create_backend
from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_model_dir

GRAMMARS = {
    "json_like": r'''root ::= value
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" (pair ("," pair)*)? "}"
pair ::= string ":" value
array ::= "[" (value ("," value)*)? "]"
string ::= "\"" [^"\\]* "\""
number ::= "-"? [0-9]+ ("." [0-9]+)?''',
    "arith": 'root ::= expr\nexpr ::= term (("+" | "*") term)*\nterm ::= [0-9]+ | "(" expr ")"',
    "sql_like": 'root ::= "SELECT " ident (", " ident)* " FROM " ident ";"\nident ::= [a-z] [a-z0-9_]*',
}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e6


def run(tokenizer, walks: int, steps: int, seed: int) -> Dict[str, Dict[str, float]]:
    vocab = len(tokenizer)
    lark = create_backend("lark", tokenizer, vocab)
    xgr = create_backend("xgrammar", tokenizer, vocab)
    a, b = torch.zeros(vocab, dtype=torch.bool), torch.zeros(vocab, dtype=torch.bool)
    out = {}
    for name, grammar in GRAMMARS.items():
        ours, theirs = lark.compile("ebnf", grammar), xgr.compile("ebnf", grammar)
        rng = random.Random(seed)
        paths: List[List[int]] = []
        times = {"lark_cold": [], "xgrammar_cold": [], "lark_warm": [], "xgrammar_warm": []}
        for phase in ("cold", "warm"):
            for w in range(walks):
                g, x = ours.copy(), theirs.copy()
                path = paths[w] if phase == "warm" else []
                for i in range(steps if phase == "cold" else len(path)):
                    times[f"lark_{phase}"].append(_timed(lambda: g.fill_allowed_mask(a)))
                    times[f"xgrammar_{phase}"].append(_timed(lambda: x.fill_allowed_mask(b)))
                    if phase == "cold":
                        allowed = [t for t in a.nonzero().flatten().tolist() if t != tokenizer.eos_token_id]
                        if not allowed:
                            break
                        path.append(rng.choice(allowed))
                    g.accept_token(path[i])
                    x.accept_token(path[i])
                if phase == "cold":
                    paths.append(path)
        out[name] = {f"{k}_{stat}": round(fn(v), 1) for k, v in times.items() if v
                     for stat, fn in (("median", statistics.median), ("mean", statistics.mean), ("max", max))}
        out[name]["steps"] = sum(len(p) for p in paths)
    return {"vocab": vocab, "grammars": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--walks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tokenizer = get_tokenizer(args.tokenizer or tiny_model_dir("llama"))
    torch.set_num_threads(1)
    print(json.dumps(run(tokenizer, args.walks, args.steps, args.seed), indent=1))


if __name__ == "__main__":
    main()
