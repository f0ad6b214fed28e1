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
