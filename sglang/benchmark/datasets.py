"""Synthetic benchmark datasets, made locally (nothing is downloaded).

- random-ids: random token ids (special tokens excluded) of lengths drawn in
  [len * range_ratio, len].
- random: the same kind of prompt as text (what a client would send), re-tokenized by the server.
  Text prompts draw from whole-word tokens (" the", " cat") where the vocabulary has enough of
  them: arbitrary ids decode to byte fragments that re-tokenize to ~1.5x the asked length, while
  whole words round-trip exactly under byte-level BPE. `input_ids` of a text prompt are its
  re-tokenization, so reported lengths are what the server actually sees.
- generated-shared-prefix: groups of prompts sharing a long system prompt, each with its own
  question (the RadixAttention showcase).
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass
from typing import List, Optional


@dataclass
class BenchRequest:
    input_ids: List[int]
    output_len: int
    text: Optional[str] = None


def _usable_ids(tokenizer, vocab_size: int) -> List[int]:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    limit = min(vocab_size, len(tokenizer)) if tokenizer is not None else vocab_size
    return [i for i in range(limit) if i not in special]


_WORD = re.compile(r" [A-Za-z]+")
_MIN_WORD_POOL = 32  # below this, prompts would be too repetitive; fall back to all ids


def _text_ids(tokenizer, vocab_size: int) -> List[int]:
    """Ids of whole-word tokens that encode back to themselves, or all usable ids if too few."""
    usable = _usable_ids(tokenizer, vocab_size)
    words = [i for i in usable if _WORD.fullmatch(tokenizer.decode([i]))
             and tokenizer.encode(tokenizer.decode([i]), add_special_tokens=False) == [i]]
    return words if len(words) >= _MIN_WORD_POOL else usable


def _as_text(tokenizer, ids: List[int], output_len: int) -> BenchRequest:
    text = tokenizer.decode(ids)
    return BenchRequest(tokenizer.encode(text, add_special_tokens=False), output_len, text)


def _lengths(rng: random.Random, n: int, length: int, ratio: float) -> List[int]:
    low = max(int(length * ratio), 1)
    return [rng.randint(low, max(length, low)) for _ in range(n)]


def random_requests(tokenizer, vocab_size: int, num_prompts: int, input_len: int, output_len: int,
                    range_ratio: float = 0.0, seed: int = 1, as_text: bool = False) -> List[BenchRequest]:
    rng = random.Random(seed)
    ids = _text_ids(tokenizer, vocab_size) if as_text else _usable_ids(tokenizer, vocab_size)
    out = []
    for in_len, out_len in zip(_lengths(rng, num_prompts, input_len, range_ratio),
                               _lengths(rng, num_prompts, output_len, range_ratio)):
        prompt = [rng.choice(ids) for _ in range(in_len)]
        out.append(_as_text(tokenizer, prompt, out_len) if as_text else BenchRequest(prompt, out_len))
    return out


def shared_prefix_requests(tokenizer, vocab_size: int, num_groups: int, prompts_per_group: int,
                           system_prompt_len: int, question_len: int, output_len: int,
                           seed: int = 1, as_text: bool = False) -> List[BenchRequest]:
    rng = random.Random(seed)
    ids = _text_ids(tokenizer, vocab_size) if as_text else _usable_ids(tokenizer, vocab_size)
    out = []
    for _ in range(num_groups):
        system = [rng.choice(ids) for _ in range(system_prompt_len)]
        for _ in range(prompts_per_group):
            prompt = system + [rng.choice(ids) for _ in range(question_len)]
            out.append(_as_text(tokenizer, prompt, output_len) if as_text else BenchRequest(prompt, output_len))
    rng.shuffle(out)
    return out


def add_dataset_args(p: argparse.ArgumentParser, **defaults) -> None:
    """The dataset flags shared by the benchmark CLIs (upstream's names); `defaults` overrides the
    default of any of them by destination name, e.g. num_prompts=100."""
    d = {"num_prompts": 1000, "random_input_len": 1024, "random_output_len": 1024, "gsp_num_groups": 64,
         "gsp_prompts_per_group": 16, "gsp_system_prompt_len": 2048, "gsp_question_len": 128,
         "gsp_output_len": 256, **defaults}
    p.add_argument("--dataset-name", default="random", choices=("random", "random-ids", "generated-shared-prefix"),
                   help="random: text prompts; random-ids: token-id prompts; generated-shared-prefix: groups "
                        "sharing a system prompt.")
    p.add_argument("--num-prompts", type=int, default=d["num_prompts"], help="Prompts for the random datasets.")
    p.add_argument("--random-input-len", type=int, default=d["random_input_len"], help="Prompt tokens (max).")
    p.add_argument("--random-output-len", type=int, default=d["random_output_len"], help="Output tokens (max).")
    p.add_argument("--random-range-ratio", type=float, default=0.0,
                   help="Lengths are drawn uniformly in [len * ratio, len]; 1 fixes them.")
    p.add_argument("--gsp-num-groups", type=int, default=d["gsp_num_groups"], help="generated-shared-prefix: groups.")
    p.add_argument("--gsp-prompts-per-group", type=int, default=d["gsp_prompts_per_group"], help="generated-shared-prefix: prompts per group.")
    p.add_argument("--gsp-system-prompt-len", type=int, default=d["gsp_system_prompt_len"], help="generated-shared-prefix: shared prefix tokens.")
    p.add_argument("--gsp-question-len", type=int, default=d["gsp_question_len"], help="generated-shared-prefix: per-prompt tokens.")
    p.add_argument("--gsp-output-len", type=int, default=d["gsp_output_len"], help="generated-shared-prefix: output tokens.")
    p.add_argument("--seed", type=int, default=1, help="Seed for the dataset and the arrival times.")
