"""Embedding and reward models on the GPU (Triton attention backend, CUDA graphs left on): float32
embeddings and scores against transformers on the CPU, chunked prefill and batching included,
and bfloat16 embeddings close to the float32 reference."""

from __future__ import annotations

import pytest
import torch

from sglang.testing.fixtures import tiny_model_dir, tiny_pooling_dir
from sglang.testing.pooling_reference import cosine, hf_embeddings, hf_scores
from tests.models.test_pooling_models import prompt_ids, run_encode

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GPU = {"device": "cuda", "attention_backend": "triton"}


@pytest.mark.parametrize("arch,pooling,normalize", [("mistral", "mean", True), ("qwen2", "last", True),
                                                    ("llama", "mean", False)])
def test_embeddings_on_gpu_match_transformers(arch, pooling, normalize):
    path = tiny_pooling_dir(arch, pooling=pooling, normalize=normalize)
    ids = prompt_ids(path) + [list(range(3, 70))]
    refs = hf_embeddings(path, ids, pooling, normalize)
    for chunk in (2048, 16):  # whole prompts, and prompts cut into chunks of 16
        ours = run_encode(path, ids, dtype="float32", chunked_prefill_size=chunk, **GPU)
        for vec, ref in zip(ours, refs):
            assert cosine(vec, ref) >= 0.99999
            assert torch.allclose(torch.tensor(vec), ref, atol=1e-3, rtol=1e-3)


def test_causal_lm_as_embedding_bf16_close_to_float32():
    path = tiny_model_dir("llama")
    ids = prompt_ids(path)
    refs = hf_embeddings(path, ids, "last", True)
    ours = run_encode(path, ids, dtype="bfloat16", is_embedding=True, **GPU)
    assert min(cosine(v, r) for v, r in zip(ours, refs)) >= 0.99


def test_reward_scores_on_gpu_match_transformers():
    path = tiny_pooling_dir("llama", head="seqcls", num_labels=3)
    ids = prompt_ids(path)
    together = run_encode(path, ids, dtype="float32", **GPU)
    alone = run_encode(path, ids, together=False, dtype="float32", **GPU)
    for ours, single, ref in zip(together, alone, hf_scores(path, ids)):
        assert (torch.tensor(ours) - ref).abs().max() <= 1e-3
        assert torch.allclose(torch.tensor(ours), torch.tensor(single), atol=1e-4)
