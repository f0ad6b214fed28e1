"""Prompts shared by engine tests: varied lengths, shared prefixes, multi-byte text."""

from __future__ import annotations

import random
from typing import List

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Le café était naïve et le jardin plein de fleurs; the garden was",
    '{"name": "Alice", "age": 30, "city": "Paris", "tags": ["a", "b"]}',
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
    "The quick brown fox jumps over the lazy dog. Then the dog woke up and",
    "Hi",
]


def prompt_ids(tokenizer, n: int = 8, extra_random: int = 0, seed: int = 0) -> List[List[int]]:
    ids = [tokenizer.encode(t) for t in TEXTS[:n]]
    rng = random.Random(seed)
    vocab = len(tokenizer)
    specials = set(tokenizer.all_special_ids)
    for _ in range(extra_random):
        ids.append([rng.choice([i for i in range(vocab) if i not in specials]) for _ in range(rng.randint(5, 60))])
    return ids
