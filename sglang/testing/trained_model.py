"""A tiny Llama checkpoint trained to memorize a small synthetic corpus.

Random tiny checkpoints produce gibberish, which is fine for "ours == HF" tests but useless where
a test (or an example) needs predictable, template-following text: e.g. API speculative
execution, where one call generates several fields that are matched back to a template. This
model memorizes `trained_corpus()`, so greedy decoding from any corpus prefix reproduces the
document, e.g. "Name: Alice\\nAge:" -> " 31\\nJob: pilot\\n" and then a stop token.

Training conventions (what greedy decoding gives):
- Plain documents are trained as BOS + text + <|end_of_text|> (a stop token), so generation stops
  right after a record, answer or review.
- Chat documents are rendered with the checkpoint's own chat template and end with <|eot_id|>.
- Where documents share a prefix (every record starts with "Name:"), the first document of each
  group is weighted `FIRST_WEIGHT`x, so e.g. "Name:" greedily continues with Alice's record.
After training, every corpus position is checked to predict its expected token with a logit
margin of at least `MIN_MARGIN` (half the ideal margin where documents share the prefix); the
build fails loudly instead of writing a weak model.

The tokenizer is exactly the tiny llama one (`write_tokenizer("llama", ...)`).

CLI: python -m sglang.testing.trained_model --out DIR [--seed N] [--steps N]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import jinja2.ext
import torch
import transformers
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from sglang.testing.tiny_model import (
    _state_dict_to_save,
    config_json_dict,
    save_weights,
    tiny_config,
    write_generation_config,
)
from sglang.testing.tokenizer_factory import tokenizer_family, write_json, write_tokenizer


@dataclass(frozen=True)
class Person:
    name: str
    age: int
    job: str

    def record(self) -> str:
        return f"Name: {self.name}\nAge: {self.age}\nJob: {self.job}\n"


PEOPLE: tuple[Person, ...] = (
    Person("Alice", 31, "pilot"),
    Person("Bob", 27, "chef"),
    Person("Carol", 45, "doctor"),
    Person("Mia", 38, "teacher"),
    Person("Emma", 29, "nurse"),
    Person("Frank", 52, "farmer"),
    Person("Grace", 34, "lawyer"),
    Person("Henry", 41, "baker"),
    Person("Irene", 26, "artist"),
    Person("Tom", 47, "plumber"),
    Person("Karen", 36, "engineer"),
    Person("Leo", 23, "student"),
)
QA_PAIRS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the capital of Italy?", "Rome"),
    ("What color is the sky?", "Blue"),
    ("How many legs does a dog have?", "Four"),
    ("What is 2 + 2?", "4"),
)
FACTS: tuple[str, ...] = (
    "The sky is blue.",
    "The grass is green.",
    "The sun is hot.",
    "Snow is cold and white.",
)
REVIEWS: tuple[tuple[str, str], ...] = (
    ("I loved it.", "positive"),
    ("It was awful.", "negative"),
    ("Great food and friendly staff.", "positive"),
    ("The service was slow and rude.", "negative"),
    ("Best movie of the year.", "positive"),
    ("I want my money back.", "negative"),
)
# Each entry is one conversation: role/content messages ending with the assistant's turn.
CHATS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "What is the capital of France?"), ("assistant", "The capital of France is Paris.")),
    (("user", "What is the capital of Japan?"), ("assistant", "The capital of Japan is Tokyo.")),
    (("user", "What color is the sky?"), ("assistant", "The sky is blue.")),
    (("user", "Say hello."), ("assistant", "Hello! How can I help you today?")),
    (("system", "You are a helpful assistant."), ("user", "What is the capital of Italy?"),
     ("assistant", "The capital of Italy is Rome.")),
)

# Weight of the first document of each group (see module docstring). Names are chosen so their
# first tokens differ, so the ideal greedy margin after "Name:" is log(4) > MIN_MARGIN.
FIRST_WEIGHT = 4.0
MIN_MARGIN = 1.0  # required top-1 minus top-2 logit gap at every unambiguous corpus position
TRAIN_DIMS = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
DEFAULT_STEPS = 150
LEARNING_RATE = 5e-3
# One thread: on a loaded shared machine, multi-threaded tiny matmuls spend most of their time
# waiting at OpenMP barriers (measured ~10x slower with 2 threads), and one thread is deterministic.
MAX_THREADS = 1


def qa_text(question: str, answer: str) -> str:
    return f"Q: {question}\nA: {answer}\n"


def review_text(review: str, sentiment: str) -> str:
    return f"Review: {review} Sentiment: {sentiment}\n"


def render_chat(messages: Sequence[tuple[str, str]], add_generation_prompt: bool = False) -> str:
    """Render with the llama family chat template, as transformers' apply_chat_template does."""
    family = tokenizer_family("llama")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[jinja2.ext.loopcontrols])
    return env.from_string(family.chat_template).render(
        messages=[{"role": r, "content": c} for r, c in messages],
        add_generation_prompt=add_generation_prompt, bos_token=family.bos, eos_token=family.eos)


def _groups() -> list[list[str]]:
    return [
        [p.record() for p in PEOPLE],
        [qa_text(q, a) for q, a in QA_PAIRS],
        list(FACTS),
        [review_text(r, s) for r, s in REVIEWS],
        [render_chat(c) for c in CHATS],
    ]


def trained_corpus() -> list[str]:
    """The memorized documents, in order: records, Q/A, facts, reviews, rendered chats."""
    return [doc for group in _groups() for doc in group]


def doc_weights() -> list[float]:
    """Training weight of each `trained_corpus()` document (`FIRST_WEIGHT` for group leaders)."""
    return [FIRST_WEIGHT if i == 0 else 1.0 for group in _groups() for i in range(len(group))]


def encode_document(tok: Tokenizer, doc: str) -> list[int]:
    """Token ids a document is trained on (see the module docstring for the conventions)."""
    family = tokenizer_family("llama")
    if doc.startswith(family.bos):  # rendered chat: BOS and the final <|eot_id|> are in the text
        return tok.encode(doc, add_special_tokens=False).ids
    end_of_text = tok.token_to_id("<|end_of_text|>")
    return tok.encode(doc).ids + [end_of_text]  # the post-processor prepends BOS


def _batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs and next-token targets (-100 on padding). Causal attention means
    right padding never affects real positions, so no attention mask is needed."""
    width = max(len(s) for s in seqs)
    inputs = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), width), -100, dtype=torch.long)
    for row, s in enumerate(seqs):
        inputs[row, :len(s)] = torch.tensor(s)
        targets[row, :len(s) - 1] = torch.tensor(s[1:])
    return inputs, targets


@dataclass(frozen=True)
class Expected:
    """What greedy decoding should do at one corpus position."""

    tokens: frozenset[int]  # acceptable next tokens (several only on an exact weight tie)
    ideal_margin: float  # log(best / runner-up weight): a perfect fit's logit gap (inf if unique)


def expected_targets(seqs: list[list[int]], weights: list[float]) -> list[list[Expected]]:
    """For each position, the heaviest continuation(s) of that exact prefix across the corpus."""
    votes: dict[tuple[int, ...], dict[int, float]] = {}
    for s, w in zip(seqs, weights):
        for t in range(len(s) - 1):
            counts = votes.setdefault(tuple(s[:t + 1]), {})
            counts[s[t + 1]] = counts.get(s[t + 1], 0.0) + w
    out = []
    for s in seqs:
        row = []
        for t in range(len(s) - 1):
            counts = votes[tuple(s[:t + 1])]
            ranked = sorted(counts.values(), reverse=True) + [0.0]
            ideal = math.log(ranked[0] / ranked[1]) if ranked[1] else math.inf
            row.append(Expected(frozenset(k for k, c in counts.items() if c == ranked[0]), ideal))
        out.append(row)
    return out


def check_memorized(model: torch.nn.Module, seqs: list[list[int]], weights: list[float],
                    pad_id: int) -> float:
    """Raise unless every corpus position greedily predicts an expected token with a logit gap of
    at least min(MIN_MARGIN, ideal / 2); return the smallest gap at fully determined positions."""
    inputs, _ = _batch(seqs, pad_id)
    with torch.no_grad():
        logits = model(input_ids=inputs).logits
    worst = math.inf
    for row, expect in enumerate(expected_targets(seqs, weights)):
        for t, exp in enumerate(expect):
            top2 = torch.topk(logits[row, t], 2)
            gap = float(top2.values[0] - top2.values[1])
            if int(top2.indices[0]) not in exp.tokens or gap < min(MIN_MARGIN, exp.ideal_margin / 2):
                raise RuntimeError(f"document {row} position {t}: predicted {int(top2.indices[0])} "
                                   f"(gap {gap:.3f}), expected one of {sorted(exp.tokens)}")
            if exp.ideal_margin == math.inf:
                worst = min(worst, gap)
    return worst


def _lr_scale(step: int, steps: int) -> float:
    """Linear warmup over the first 10% of steps, then cosine decay to 2%."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _length_buckets(seqs: list[list[int]]) -> list[list[int]]:
    """Split document indices into two length buckets minimising padded tokens: the few long
    chat documents would otherwise more than double the work of every short one."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    lens = [len(seqs[i]) for i in order]
    cost = [k * lens[k - 1] + (len(lens) - k) * lens[-1] for k in range(1, len(lens))]
    if not cost:
        return [order]
    split = 1 + cost.index(min(cost))
    return [order[:split], order[split:]]


def train_model(config: transformers.PretrainedConfig, seqs: list[list[int]], weights: list[float],
                pad_id: int, seed: int = 0, steps: int = DEFAULT_STEPS) -> torch.nn.Module:
    """Full-batch AdamW on CPU with a fixed seed, linear warmup and cosine decay; the loss is the
    document-weighted mean over all target tokens."""
    buckets = []
    for idx in _length_buckets(seqs):
        inputs, targets = _batch([seqs[i] for i in idx], pad_id)
        token_w = torch.tensor([weights[i] for i in idx]).unsqueeze(1) * (targets != -100)
        buckets.append((inputs, targets.clamp(min=0).flatten(), token_w.flatten()))
    total_w = sum(float(w.sum()) for _, _, w in buckets)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(MAX_THREADS, threads))
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
            torch.manual_seed(seed)
            model = getattr(transformers, config.architectures[0])(config).float().train()
            opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _lr_scale(i, steps))
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                for inputs, targets, token_w in buckets:  # gradients accumulate: one full batch
                    logits = model(input_ids=inputs).logits.flatten(0, 1)
                    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                    ((loss * token_w).sum() / total_w).backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def make_trained_checkpoint(out_dir: str, seed: int = 0, steps: int = DEFAULT_STEPS,
                            verbose: bool = False) -> str:
    """Train the memorizing tiny llama and write it into `out_dir` (HF layout); return `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    ids = write_tokenizer("llama", out_dir)
    tok = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    seqs = [encode_document(tok, d) for d in trained_corpus()]
    weights = doc_weights()
    config = tiny_config("llama", ids, **TRAIN_DIMS)
    start = time.perf_counter()
    model = train_model(config, seqs, weights, ids.pad_id, seed=seed, steps=steps)
    margin = check_memorized(model, seqs, weights, ids.pad_id)
    if verbose:
        print(f"trained {steps} steps in {time.perf_counter() - start:.1f}s, min margin {margin:.2f}")
    save_weights(_state_dict_to_save(model, config.tie_word_embeddings), out_dir)
    write_json(os.path.join(out_dir, "config.json"), config_json_dict(config))
    write_generation_config(out_dir, ids)
    return out_dir


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sglang.testing.trained_model",
                                     description="Train a tiny llama that memorizes a small corpus.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    args = parser.parse_args(argv)
    print(make_trained_checkpoint(args.out, seed=args.seed, steps=args.steps, verbose=True))


if __name__ == "__main__":
    main()
