"""Issue 22's engine-level acceptance: every grammar of the EBNF corpus (cfg_specs), sampled at
temperature 1 on the tiny model under both xgrammar and the lark backend (one Engine each, all
grammars x SAMPLES in one batch). A finished output must parse under lark's Earley parser; an
output cut by max_new_tokens must be a prefix the *other* backend's matcher accepts token by
token (so neither backend judges itself)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

import sglang
from sglang.runtime.constrained.registry import create_backend
from sglang.testing.fixtures import tiny_model_dir
from tests.constrained.cfg_specs import CFG_SPECS

# The figure: 36 grammars x 32 = 1152 requests per backend, ~10-30 s each on 2 CPU cores.
SAMPLES = 32
MAX_NEW_TOKENS = 48
OTHER = {"xgrammar": "lark", "lark": "xgrammar"}


def _run(backend: str, samples: int) -> tuple:
    """Runs the corpus, checking every output; returns (finished outputs, all outputs)."""
    path = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(path)
    eos = tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<|end_of_text|>"])
    judge = create_backend(OTHER[backend], tokenizer, len(tokenizer), eos_token_ids=eos)
    with sglang.Engine(model_path=path, device="cpu", random_seed=0, grammar_backend=backend,
                       max_total_tokens=32768) as engine:
        params = [{"max_new_tokens": MAX_NEW_TOKENS, "temperature": 1.0, "seed": i, "ebnf": spec.grammar}
                  for spec in CFG_SPECS for i in range(samples)]
        outs = engine.generate(["Output:"] * len(params), params)
    finished = 0
    for k, out in enumerate(outs):
        spec = CFG_SPECS[k // samples]
        reason = out["meta_info"]["finish_reason"]
        assert reason["type"] in ("stop", "length"), (spec.name, reason)
        if reason["type"] == "stop":
            spec.check(out["text"])
            finished += 1
        else:
            matcher = judge.compile("ebnf", spec.grammar)
            assert matcher.accept_tokens(out["output_ids"]), (spec.name, out["text"])
    print(f"{backend}: {finished} of {len(outs)} outputs finished, the rest valid prefixes")
    return finished, len(outs)


@pytest.mark.parametrize("backend", ["xgrammar", "lark"])
def test_corpus_on_the_engine(backend: str) -> None:
    finished, total = _run(backend, SAMPLES)
    assert total == len(CFG_SPECS) * SAMPLES
    assert finished >= total // 4, f"only {finished} of {total} outputs finished"
