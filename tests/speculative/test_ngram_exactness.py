"""NGRAM speculation end to end in the scheduler: greedy outputs token-identical to plain
decoding (64 copy-heavy prompts, batched and alone; radix on/off, chunked prefill, no overlap),
with drafts actually accepted, the KV pool consistent after every step and fully free at the end."""

from __future__ import annotations

from typing import Dict, List, Tuple

import pytest

from sglang.runtime.mem_cache.base_prefix_cache import check_pool_invariant
from sglang.testing.fixtures import trained_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness
from tests.speculative.copy_prompts import copy_prompts

NEW_TOKENS = 24
GREEDY = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}
SPEC = {"speculative_algorithm": "NGRAM", "speculative_disable_batch_size": 64}


@pytest.fixture(scope="module")
def model_path() -> str:
    return trained_model_dir()


@pytest.fixture(scope="module")
def prompts(model_path) -> List[List[int]]:
    return copy_prompts(SchedulerHarness(model_path).tokenizer, 64)


def _invariant(h: SchedulerHarness) -> None:
    check_pool_invariant(h.runner.allocator, h.scheduler.tree_cache, h.live_reqs())


def generate(model_path: str, prompts: List[List[int]], params=GREEDY, alone: bool = False,
             **overrides) -> Tuple[List[list], SchedulerHarness]:
    """Outputs per prompt (submitted together, or one at a time with `alone`)."""
    h = SchedulerHarness(model_path, **overrides)
    for i, ids in enumerate(prompts):
        h.submit(str(i), input_ids=ids, params=dict(params))
        if alone:
            h.run_until_idle(after_step=_invariant)
    results = h.run_until_idle(after_step=_invariant)
    assert h.scheduler.check_memory_idle() is None
    return [results[str(i)].output_ids for i in range(len(prompts))], h


@pytest.fixture(scope="module")
def reference(model_path, prompts) -> List[list]:
    return generate(model_path, prompts)[0]


def accepted(h: SchedulerHarness) -> int:
    return h.scheduler.state()["spec_accepted_tokens"]


def test_batched_greedy_is_identical_and_drafts_are_accepted(model_path, prompts, reference):
    outs, h = generate(model_path, prompts, **SPEC)
    assert outs == reference
    state = h.scheduler.state()
    assert state["spec_verify_passes"] > 0 and accepted(h) > 0, state
    # Speculation saved forward passes: fewer decode steps than tokens generated after the first.
    assert state["decode_steps"] < NEW_TOKENS - 1


def test_alone_greedy_is_identical(model_path, prompts, reference):
    outs, h = generate(model_path, prompts, alone=True, **SPEC)
    assert outs == reference
    assert accepted(h) > 0


@pytest.mark.parametrize("overrides", [
    {"disable_radix_cache": True},
    {"chunked_prefill_size": 7},
    {"disable_overlap_schedule": True},
    {"speculative_num_draft_tokens": 2},
    {"speculative_ngram_min_match_window_size": 3, "speculative_ngram_max_match_window_size": 3},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_greedy_identical_under_options(model_path, prompts, reference, overrides):
    outs, h = generate(model_path, prompts, **SPEC, **overrides)
    assert outs == reference
    assert accepted(h) > 0


def test_large_batches_skip_speculation(model_path, prompts, reference):
    outs, h = generate(model_path, prompts, speculative_algorithm="NGRAM", speculative_disable_batch_size=4)
    assert outs == reference
    # Only the tail of the run (<= 4 requests left) may speculate.
    assert h.scheduler.state()["spec_verify_passes"] < NEW_TOKENS


def test_radix_cache_reuses_speculated_outputs(model_path, prompts):
    """A request's output (written partly by verify passes) is cached correctly: the same
    prompt + output as a new prompt hits the cache for all of it and continues identically."""
    h = SchedulerHarness(model_path, **SPEC)
    h.submit("a", input_ids=prompts[0], params={**GREEDY, "max_new_tokens": 2 * NEW_TOKENS})
    full = h.run_until_idle(after_step=_invariant)["a"].output_ids
    h.submit("b", input_ids=prompts[0] + full[:NEW_TOKENS], params=GREEDY)
    res = h.run_until_idle(after_step=_invariant)["b"]
    assert res.cached_tokens >= len(prompts[0]) + NEW_TOKENS - 2
    assert res.output_ids == full[NEW_TOKENS:]
    assert h.scheduler.check_memory_idle() is None


@pytest.mark.parametrize("max_new", [1, 2, 3, 7])
def test_never_emits_past_max_new_tokens(model_path, prompts, max_new):
    params = {**GREEDY, "max_new_tokens": max_new}
    ref, _ = generate(model_path, prompts[:16], params=params)
    outs, _ = generate(model_path, prompts[:16], params=params, **SPEC)
    assert outs == ref
    assert all(len(o) == max_new for o in outs)


def test_eos_inside_accepted_drafts_ends_the_request(model_path, prompts):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 0}  # EOS counts
    ref, h0 = generate(model_path, prompts, params=params)
    outs, h = generate(model_path, prompts, params=params, **SPEC)
    assert outs == ref
    assert any(len(o) < NEW_TOKENS for o in outs), "some request should end by EOS"
    assert [h.results[str(i)].finished_reason for i in range(len(prompts))] == \
           [h0.results[str(i)].finished_reason for i in range(len(prompts))]


def test_stop_strings(model_path, prompts, reference):
    tok = SchedulerHarness(model_path).tokenizer
    stops: Dict[int, str] = {}
    for i, out in enumerate(reference[:32]):
        text = tok.decode(out[: NEW_TOKENS // 2])
        piece = text.strip()[-3:]
        if piece.strip():
            stops[i] = piece
    assert len(stops) > 8
    sel = sorted(stops)
    results = {}
    for spec in (False, True):
        h = SchedulerHarness(model_path, **(SPEC if spec else {}))
        for i in sel:
            h.submit(str(i), input_ids=prompts[i], params={**GREEDY, "stop": [stops[i]]})
        res = h.run_until_idle(after_step=_invariant)
        assert h.scheduler.check_memory_idle() is None
        results[spec] = [(res[str(i)].output_ids, res[str(i)].finished_reason) for i in sel]
    assert results[True] == results[False]
    assert sum(r[1]["type"] == "stop" for r in results[True]) > 8


def test_penalties_and_min_tokens_apply_to_verify_rows(model_path, prompts):
    params = {**GREEDY, "repetition_penalty": 1.3, "frequency_penalty": 0.4, "presence_penalty": 0.2,
              "ignore_eos": False, "min_new_tokens": 5}
    ref, _ = generate(model_path, prompts[:24], params=params)
    outs, _ = generate(model_path, prompts[:24], params=params, **SPEC)
    assert outs == ref
