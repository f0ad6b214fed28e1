"""transformers references for pooling models: what sentence-transformers computes from
AutoModel's final hidden states, and AutoModelForSequenceClassification's scores (float32, one
prompt at a time, so no padding is involved)."""

from __future__ import annotations

from typing import List, Sequence

import torch


def hf_embeddings(model_path: str, prompts: Sequence[Sequence[int]], method: str, normalize: bool) -> List[torch.Tensor]:
    """Pooled final hidden states of the backbone (`AutoModel`, which drops any LM head)."""
    import transformers

    model = transformers.AutoModel.from_pretrained(model_path, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for ids in prompts:
            hidden = model(torch.tensor([list(ids)])).last_hidden_state[0]
            vector = hidden[-1] if method == "last" else hidden.mean(0)
            out.append(torch.nn.functional.normalize(vector, dim=-1) if normalize else vector)
    return out


def hf_scores(model_path: str, prompts: Sequence[Sequence[int]]) -> List[torch.Tensor]:
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_path, dtype=torch.float32).eval()
    with torch.no_grad():
        return [model(torch.tensor([list(ids)])).logits[0] for ids in prompts]


def cosine(a: Sequence[float], b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(torch.as_tensor(a, dtype=torch.float32), b.float(), dim=0))
