"""NGRAM speculation with the rest of the runtime: logprobs, JSON-schema constraints, sampling
at temperature 1, meta_info fields through the Engine, the /metrics histogram, and the refusal
of algorithms that are not implemented."""

from __future__ import annotations

import json

import pytest

import sglang
from sglang.runtime.metrics.collector import MetricsCollector
from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import trained_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness
from tests.speculative.copy_prompts import copy_prompts
from tests.speculative.test_ngram_exactness import GREEDY, SPEC, _invariant, generate

SCHEMA = json.dumps({
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"enum": [27, 31, 45]},
                   "job": {"type": "string", "maxLength": 12}},
    "required": ["name", "age", "job"],
})


@pytest.fixture(scope="module")
def model_path() -> str:
    return trained_model_dir()


@pytest.fixture(scope="module")
def prompts(model_path):
    return copy_prompts(SchedulerHarness(model_path).tokenizer, 16)


def _flat_logprobs(res):
    vals, ids, tops = [], [], []
    for delta in res.logprobs:
        vals += delta.output_token_logprobs
        ids += delta.output_token_ids
        tops += delta.output_top_logprobs
    return vals, ids, tops


def test_output_logprobs_match_plain_decoding(model_path, prompts):
    runs = {}
    for spec in (False, True):
        h = SchedulerHarness(model_path, **(SPEC if spec else {}))
        for i, ids in enumerate(prompts):
            h.submit(str(i), input_ids=ids, params=GREEDY, return_logprob=True, top_logprobs_num=3)
        res = h.run_until_idle(after_step=_invariant)
        runs[spec] = [res[str(i)] for i in range(len(prompts))]
        if spec:
            assert h.scheduler.state()["spec_accepted_tokens"] > 0
    assert_logprobs_match(runs[False], runs[True])


def assert_logprobs_match(plain_runs, spec_runs) -> None:
    """Same tokens, output logprobs within 1e-4 and the same top-3 ids, request by request."""
    for plain, spec in zip(plain_runs, spec_runs):
        assert spec.output_ids == plain.output_ids
        pv, pids, ptops = _flat_logprobs(plain)
        sv, sids, stops = _flat_logprobs(spec)
        assert sids == pids == plain.output_ids
        assert sv == pytest.approx(pv, abs=1e-4)
        assert [[t for _, t in row] for row in stops] == [[t for _, t in row] for row in ptops]


@pytest.mark.parametrize("jump", [False, True], ids=["no-jump", "jump-forward"])
@pytest.mark.parametrize("backend", ["xgrammar", "fsm"])
def test_json_schema_greedy_identical_and_valid(model_path, backend, jump):
    """Token-identical without jump-forward. With it, whether a forced text is jumped depends on
    the running batch size at that moment (grammar_support.try_jump_forward), which speculation
    changes (requests finish after fewer steps), and a jump re-tokenizes: outputs are then only
    checked to be valid."""
    tok = SchedulerHarness(model_path).tokenizer
    texts = [f'{{"name": "Alice", "age": 31, "job": "pilot"}}\n{{"name": "Bob", "age": {20 + i}, "job": "'
             for i in range(8)]
    params = {"max_new_tokens": 48, "temperature": 0, "json_schema": SCHEMA}
    outs = {}
    for spec in (False, True):
        ids = [tok.encode(t) for t in texts]
        outs[spec], h = generate(model_path, ids, params=params, grammar_backend=backend,
                                 disable_jump_forward=not jump, **(SPEC if spec else {}))
        assert all(r.finished_reason["type"] == "stop" for r in h.results.values())
        if spec:
            assert h.scheduler.state()["spec_verify_passes"] > 0
    if not jump:
        assert outs[True] == outs[False]
    for out in outs[True]:
        json.loads(tok.decode(out, skip_special_tokens=True))


def test_temperature_one_runs_clean_and_accepts(model_path, prompts):
    params = {"max_new_tokens": 24, "temperature": 1.0, "ignore_eos": True, "top_p": 0.95}
    outs, h = generate(model_path, prompts, params=params, **SPEC)
    assert all(len(o) == 24 for o in outs)
    assert h.scheduler.state()["spec_accepted_tokens"] > 0


def test_meta_info_and_metrics_histogram(model_path, prompts):
    with sglang.Engine(model_path=model_path, device="cpu", random_seed=0, speculative_algorithm="NGRAM") as eng:
        out = eng.generate(input_ids=prompts[0], sampling_params=GREEDY)
        meta = out["meta_info"]
        assert meta["spec_verify_ct"] > 0 and meta["spec_accept_token_num"] > 0
        assert meta["spec_draft_token_num"] >= meta["spec_accept_token_num"]
        assert meta["spec_verify_ct"] < meta["completion_tokens"]
        state = eng.get_server_info()
    metrics = MetricsCollector("m")
    metrics.update_server_state(state)
    text = metrics.render().decode()
    assert 'sglang:spec_accept_length_bucket{le="+Inf",model_name="m"}' in text
    assert "sglang:spec_accepted_tokens_total" in text
    plain = MetricsCollector("m")
    plain.update_server_state({})
    assert "spec_accept_length" not in plain.render().decode()


@pytest.mark.parametrize("algo", ["MEDUSA", "eagle"])
def test_unimplemented_algorithms_are_refused(algo):
    with pytest.raises(ValueError, match="speculative-algorithm"):
        ServerArgs(model_path="x", device="cpu", speculative_algorithm=algo)
