"""Embedding and reward models against transformers (float32 CPU, in-process scheduler).

Embeddings: AutoModel's final hidden states + the checkpoint's pooling rule (cosine >= 0.99999);
scores: AutoModelForSequenceClassification (<= 1e-4). Also: batched == alone, chunked prefill,
the prefix cache, and the KV pool back to idle after every run."""

from __future__ import annotations

import json
import os
import shutil
from typing import Dict, List, Sequence

import pytest
import torch

from sglang.runtime.layers.pooler import PoolingConfig, read_sentence_transformers_pooling, resolve_pooling_config
from sglang.testing.fixtures import tiny_model_dir, tiny_pooling_dir
from sglang.testing.pooling_reference import cosine, hf_embeddings, hf_scores
from sglang.testing.scheduler_harness import SchedulerHarness
from sglang.testing.tiny_model import ARCHES

PROMPTS = ["The capital of France is", "hello", "a somewhat longer prompt, with punctuation; and numbers 1 2 3 4",
           "The capital of France is Paris, and the capital of Italy is Rome."]
COSINE_MIN = 0.99999


def run_encode(path: str, prompts: Sequence[List[int]], together: bool = True, **server_args) -> List[List[float]]:
    """Each prompt's pooled vector through the scheduler; all in one batch or one at a time."""
    h = SchedulerHarness(path, max_total_tokens=1024, **server_args)
    out: Dict[str, List[float]] = {}
    groups = [list(enumerate(prompts))] if together else [[p] for p in enumerate(prompts)]
    for group in groups:
        for i, ids in group:
            h.submit(str(i), input_ids=ids, params={"max_new_tokens": 0})
        res = h.run_until_idle()
        for i, _ in group:
            assert res[str(i)].finished_reason == {"type": "length", "length": 0}
            assert res[str(i)].output_ids == []
            out[str(i)] = res[str(i)].extra_meta["embedding"]
        assert h.scheduler.check_memory_idle() is None
    return [out[str(i)] for i in range(len(prompts))]


def prompt_ids(path: str) -> List[List[int]]:
    from sglang.runtime.utils import get_tokenizer

    tok = get_tokenizer(path)
    return [tok.encode(p) for p in PROMPTS]


def assert_embeddings_match(ours: Sequence[Sequence[float]], refs: Sequence[torch.Tensor]) -> None:
    for i, (vec, ref) in enumerate(zip(ours, refs)):
        assert len(vec) == ref.shape[0]
        assert cosine(vec, ref) >= COSINE_MIN, f"prompt {i}: cosine {cosine(vec, ref)}"
        assert torch.allclose(torch.tensor(vec), ref, atol=1e-4, rtol=1e-4), f"prompt {i}"


EMBEDDING_CASES = [
    # (family, sentence-transformers pooling written, normalize module)
    ("mistral", "mean", True),  # e5-style backbone, mean pooling
    ("qwen2", "last", True),  # gte-Qwen2 style: last token, normalized
    ("llama", "last", False),
    ("llama", "mean", False),
]


@pytest.mark.parametrize("arch,pooling,normalize", EMBEDDING_CASES)
def test_backbone_embeddings_match_transformers(arch, pooling, normalize):
    path = tiny_pooling_dir(arch, pooling=pooling, normalize=normalize)
    ids = prompt_ids(path)
    ours = run_encode(path, ids)
    assert_embeddings_match(ours, hf_embeddings(path, ids, pooling, normalize))
    if normalize:
        assert all(abs(float(torch.tensor(v).norm()) - 1.0) < 1e-5 for v in ours)


@pytest.mark.parametrize("arch", sorted(ARCHES))  # every text family of the tiny-model factory
def test_causal_checkpoint_with_is_embedding_defaults_to_last_token_normalized(arch):
    path = tiny_model_dir(arch)  # a *ForCausalLM checkpoint, no modules.json
    ids = prompt_ids(path)
    ours = run_encode(path, ids, is_embedding=True)
    assert_embeddings_match(ours, hf_embeddings(path, ids, "last", True))


def test_pooling_flags_override_the_checkpoint():
    path = tiny_pooling_dir("llama", pooling="last", normalize=True)
    ids = prompt_ids(path)
    ours = run_encode(path, ids, embedding_pooling="mean", embedding_normalize="false")
    assert_embeddings_match(ours, hf_embeddings(path, ids, "mean", False))


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_batched_equals_alone(pooling):
    path = tiny_pooling_dir("mistral", pooling=pooling)
    ids = prompt_ids(path)
    together, alone = run_encode(path, ids), run_encode(path, ids, together=False)
    for a, b in zip(together, alone):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling,normalize", [("last", True), ("mean", True), ("mean", False)])
def test_chunked_prefill_pools_the_whole_prompt(pooling, normalize):
    # Unnormalized mean: a wrong token count would only rescale a normalized vector.
    path = tiny_pooling_dir("llama", pooling=pooling, normalize=normalize)
    ids = [list(range(3, 40)), list(range(5, 26))]  # 37 and 21 tokens in chunks of 8
    ours = run_encode(path, ids, chunked_prefill_size=8)
    assert_embeddings_match(ours, hf_embeddings(path, ids, pooling, normalize))


def test_prefix_cache_reuse_keeps_last_token_embeddings():
    path = tiny_pooling_dir("qwen2", pooling="last")
    base = prompt_ids(path)[3]
    prompts = [base, base, base[:-2], base + [7, 8]]  # exact repeat, a prefix, an extension
    h = SchedulerHarness(path, max_total_tokens=1024)
    results = []
    for i, ids in enumerate(prompts):
        h.submit(str(i), input_ids=ids, params={"max_new_tokens": 0})
        results.append(h.run_until_idle()[str(i)])
    assert [r.cached_tokens > 0 for r in results] == [False, True, True, True]
    assert h.scheduler.check_memory_idle() is None
    assert_embeddings_match([r.extra_meta["embedding"] for r in results], hf_embeddings(path, prompts, "last", True))


def test_mean_pooling_turns_the_prefix_cache_off():
    path = tiny_pooling_dir("mistral", pooling="mean")
    h = SchedulerHarness(path, max_total_tokens=1024)
    ids = prompt_ids(path)[0]
    for rid in ("a", "b"):
        h.submit(rid, input_ids=ids, params={"max_new_tokens": 0})
        h.run_until_idle()
    assert h.results["b"].cached_tokens == 0  # every token's state is needed
    assert h.results["a"].extra_meta["embedding"] == h.results["b"].extra_meta["embedding"]


@pytest.mark.parametrize("arch,num_labels", [("llama", 3), ("qwen2", 1)])
def test_sequence_classification_scores_match_transformers(arch, num_labels):
    path = tiny_pooling_dir(arch, head="seqcls", num_labels=num_labels)
    ids = prompt_ids(path)
    together, alone = run_encode(path, ids), run_encode(path, ids, together=False)
    for i, (ours, ref) in enumerate(zip(together, hf_scores(path, ids))):
        assert len(ours) == num_labels
        assert (torch.tensor(ours) - ref).abs().max() <= 1e-4, f"prompt {i}"
    assert torch.allclose(torch.tensor(together), torch.tensor(alone), atol=1e-5, rtol=1e-5)  # float32 noise


# ------------------------------------------------------------------ the pooling rule's sources
def _st_dir(tmp_path, modules, pooling_config) -> str:
    path = str(tmp_path)
    with open(os.path.join(path, "modules.json"), "w") as f:
        json.dump(modules, f)
    if pooling_config is not None:
        os.makedirs(os.path.join(path, "1_Pooling"))
        with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
            json.dump(pooling_config, f)
    return path


POOL = {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}
NORM = {"type": "sentence_transformers.models.Normalize", "path": "2_Normalize"}


def test_sentence_transformers_config_is_read(tmp_path):
    path = _st_dir(tmp_path, [POOL, NORM], {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False})
    assert read_sentence_transformers_pooling(path) == PoolingConfig("mean", True)
    os.makedirs(tmp_path / "b")
    path = _st_dir(tmp_path / "b", [POOL], {"pooling_mode_lasttoken": True})
    assert read_sentence_transformers_pooling(path) == PoolingConfig("last", False)
    assert read_sentence_transformers_pooling(str(tmp_path / "nothing")) is None
    assert resolve_pooling_config(str(tmp_path / "nothing")) == PoolingConfig("last", True)  # the default


def test_unsupported_sentence_transformers_pooling_is_refused(tmp_path):
    path = _st_dir(tmp_path, [POOL], {"pooling_mode_cls_token": True})
    with pytest.raises(ValueError, match="pooling_mode_cls_token.*--embedding-pooling"):
        read_sentence_transformers_pooling(path)
    assert resolve_pooling_config(path, method="mean") == PoolingConfig("mean", False)  # the flag overrides it
    shutil.rmtree(os.path.join(path, "1_Pooling"))
    with pytest.raises(ValueError, match="missing"):
        read_sentence_transformers_pooling(path)
