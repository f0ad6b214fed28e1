"""Copy-heavy prompts for the tiny trained llama (it memorized `trained_corpus()`), so NGRAM
drafts are actually accepted: documents repeated (the model re-copies text it saw), documents
cut short (it continues a memorized text whose fields repeat), and concatenations of several."""

from __future__ import annotations

from typing import List

from sglang.testing.trained_model import encode_document, trained_corpus


def copy_prompts(tokenizer, n: int = 64) -> List[List[int]]:
    tok = tokenizer._tokenizer if hasattr(tokenizer, "_tokenizer") else tokenizer.backend_tokenizer
    docs = [encode_document(tok, d) for d in trained_corpus()]
    prompts = []
    for i in range(n):
        ids = docs[i % len(docs)]
        other = docs[(7 * i + 3) % len(docs)]
        kind = i % 4
        if kind == 0:
            prompts.append(ids + ids[: max(len(ids) // 3, 2)])
        elif kind == 1:
            prompts.append(ids[: max(len(ids) // 2, 2)])
        elif kind == 2:
            prompts.append(ids[:-1] + other[: max(len(other) // 2, 2)])
        else:
            prompts.append(other + ids + other[: max(len(other) // 4, 2)])
    return prompts
