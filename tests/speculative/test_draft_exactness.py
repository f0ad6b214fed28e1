"""DRAFT speculation (a separate small checkpoint drafts greedily): greedy outputs identical to
plain decoding whatever the draft model (the target itself: every draft accepted; an unrelated
random model: almost none), batched and alone, with radix off, chunked prefill, stop strings and
a JSON schema; the draft model's own KV pool is fully free after every run."""

from __future__ import annotations

import json

import pytest

from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_model_dir, trained_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness
from tests.speculative.copy_prompts import copy_prompts
from tests.speculative.test_ngram_exactness import NEW_TOKENS, generate


@pytest.fixture(scope="module")
def model_path() -> str:
    return trained_model_dir()


@pytest.fixture(scope="module")
def prompts(model_path):
    return copy_prompts(SchedulerHarness(model_path).tokenizer, 64)


@pytest.fixture(scope="module")
def reference(model_path, prompts):
    return generate(model_path, prompts)[0]


def draft_args(draft: str, **kw) -> dict:
    return {"speculative_algorithm": "DRAFT", "speculative_draft_model_path": draft,
            "speculative_disable_batch_size": 64, **kw}


def assert_draft_pool_free(h: SchedulerHarness) -> None:
    worker = h.scheduler.spec
    assert not worker.states
    assert worker.kv.allocator.available_size() == worker.runner.max_total_num_tokens


def test_self_draft_accepts_everything(model_path, prompts, reference):
    outs, h = generate(model_path, prompts, **draft_args(model_path))
    assert outs == reference
    state = h.scheduler.state()
    assert state["spec_accepted_tokens"] > 0
    assert state["spec_accepted_tokens"] >= 0.95 * state["spec_draft_tokens"], state
    assert_draft_pool_free(h)


def test_unrelated_draft_model_changes_nothing(model_path, prompts, reference):
    outs, h = generate(model_path, prompts, **draft_args(tiny_model_dir("llama")))
    assert outs == reference
    assert h.scheduler.state()["spec_verify_passes"] > 0
    assert_draft_pool_free(h)


@pytest.mark.parametrize("overrides", [
    {"alone": True},
    {"disable_radix_cache": True},
    {"chunked_prefill_size": 7},
    {"speculative_num_steps": 2},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_self_draft_under_options(model_path, prompts, reference, overrides):
    alone = overrides.pop("alone", False)
    subset = prompts[:16]
    outs, h = generate(model_path, subset, alone=alone, **draft_args(model_path, **overrides))
    assert outs == reference[:16]
    assert h.scheduler.state()["spec_accepted_tokens"] > 0
    assert_draft_pool_free(h)


def test_stop_strings_and_eos(model_path, prompts):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "stop": [": ", "\n"]}
    ref, h0 = generate(model_path, prompts[:24], params=params)
    outs, h = generate(model_path, prompts[:24], params=params, **draft_args(model_path))
    assert outs == ref
    assert [h.results[str(i)].finished_reason for i in range(24)] == [h0.results[str(i)].finished_reason for i in range(24)]
    assert any(r.finished_reason["type"] == "stop" for r in h.results.values())
    assert_draft_pool_free(h)


def test_json_schema(model_path):
    tok = SchedulerHarness(model_path).tokenizer
    schema = json.dumps({"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                                          "age": {"enum": [27, 31]}}, "required": ["name", "age"]})
    ids = [tok.encode(f'{{"name": "Alice", "age": 31}}\n{{"name": "B{i}') for i in range(6)]
    params = {"max_new_tokens": 40, "temperature": 0, "json_schema": schema}
    # Without jump-forward: whether it jumps depends on the batch size at that step (see
    # test_spec_features.test_json_schema_greedy_identical_and_valid).
    ref, _ = generate(model_path, ids, params=params, disable_jump_forward=True)
    outs, h = generate(model_path, ids, params=params, disable_jump_forward=True, **draft_args(model_path))
    assert outs == ref
    for out in outs:
        json.loads(tok.decode(out, skip_special_tokens=True))
    assert_draft_pool_free(h)


def test_temperature_one(model_path, prompts):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 1.0, "ignore_eos": True}
    outs, h = generate(model_path, prompts[:16], params=params, **draft_args(model_path))
    assert all(len(o) == NEW_TOKENS for o in outs)
    assert h.scheduler.state()["spec_accepted_tokens"] > 0
    assert_draft_pool_free(h)


def test_draft_needs_a_draft_model():
    with pytest.raises(ValueError, match="speculative-draft-model-path"):
        ServerArgs(model_path="x", device="cpu", speculative_algorithm="DRAFT")


def test_small_pools_retract_and_drop_draft_kv(model_path, prompts, reference):
    """Target and draft pools far too small for the batch: the target retracts, the draft KV is
    dropped and rebuilt; outputs stay identical and both pools end free."""
    outs, h = generate(model_path, prompts[:16], **draft_args(model_path, max_total_tokens=400))
    assert outs == reference[:16]
    assert h.scheduler.stats["num_retractions"] > 0
    assert_draft_pool_free(h)
