"""Embedding and reward models through the whole Engine (CPU, float32) against transformers:
Engine.encode on texts and token ids, single and batched; generating on them is refused, bad
input raises naming the problem, and the engine keeps serving."""

from __future__ import annotations

import asyncio

import pytest
import torch

import sglang
from sglang.testing.fixtures import tiny_model_dir, tiny_pooling_dir
from sglang.testing.pooling_reference import cosine, hf_embeddings, hf_scores

TEXTS = ["The capital of France is", "hello there", "one two three four five six seven eight nine ten"]
COSINE_MIN = 0.99999


def test_causal_lm_as_embedding_engine():
    path = tiny_model_dir("llama")
    with sglang.Engine(model_path=path, device="cpu", dtype="float32", is_embedding=True) as engine:
        ids = [engine.tokenizer.encode(t) for t in TEXTS]
        refs = hf_embeddings(path, ids, "last", True)
        single = engine.encode(TEXTS[0])
        assert set(single) == {"embedding", "meta_info"} and single["meta_info"]["prompt_tokens"] == len(ids[0])
        assert cosine(single["embedding"], refs[0]) >= COSINE_MIN
        batch = engine.encode(TEXTS)
        assert isinstance(batch, list) and len(batch) == len(TEXTS)
        for out, ref in zip(batch, refs):
            assert cosine(out["embedding"], ref) >= COSINE_MIN
        by_ids = engine.encode(input_ids=ids)
        assert torch.allclose(torch.tensor([o["embedding"] for o in by_ids]),
                              torch.tensor([o["embedding"] for o in batch]), atol=1e-5)
        assert cosine(engine.encode(input_ids=ids[1])["embedding"], refs[1]) >= COSINE_MIN
        assert cosine(asyncio.run(engine.async_encode(TEXTS[2]))["embedding"], refs[2]) >= COSINE_MIN

        assert engine.get_model_info()["is_generation"] is False
        with pytest.raises(ValueError, match="cannot generate.*encode"):
            engine.generate("hi", {"max_new_tokens": 2})
        with pytest.raises(ValueError, match="empty"):
            engine.encode([])
        with pytest.raises(ValueError, match=r"input_ids must be in \[0, "):
            engine.encode(input_ids=[1, 10**7])
        assert cosine(engine.encode(TEXTS[0])["embedding"], refs[0]) >= COSINE_MIN  # still serving


def test_reward_model_engine_scores_match_transformers():
    path = tiny_pooling_dir("qwen2", head="seqcls", num_labels=2)
    with sglang.Engine(model_path=path, device="cpu", dtype="float32") as engine:  # pooling arch: no flag needed
        ids = [engine.tokenizer.encode(t) for t in TEXTS]
        outs = engine.encode(TEXTS)
        for out, ref in zip(outs, hf_scores(path, ids)):
            assert len(out["embedding"]) == 2
            assert (torch.tensor(out["embedding"]) - ref).abs().max() <= 1e-4
