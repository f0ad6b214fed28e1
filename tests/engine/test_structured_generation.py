"""Structured generation through the scheduler on a random-weight tiny model, temperature 1.0.

Every spec in the suite is bounded (any path through it ends within max_new_tokens), so a valid
output is required for all 32 samples of every spec, under both grammar backends.
"""

from __future__ import annotations

import json
import re

import pytest

from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness
from tests.constrained.specs import SPECS, Spec, _ebnf_spec, _json_spec, _regex_spec

SAMPLES = 32
MAX_NEW_TOKENS = 200

_BOUNDED = {"nested_objects", "array_bounds", "enums", "integer_bounds", "string_pattern", "string_pattern_negated",
            "string_lengths", "unicode_strings", "const_field", "any_of", "date_format", "date", "email_like",
            "phone", "ipv4", "long_constant", "json_extraction"}

EXTRA = [
    _json_spec("optional_fields_bounded", {
        "type": "object",
        "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 100}, "b": {"type": "boolean"},
                       "c": {"type": "null"}},
        "required": ["b"],
    }),
    _json_spec("array_of_objects_bounded", {
        "type": "array", "minItems": 1, "maxItems": 2,
        "items": {"type": "object", "required": ["id", "tags"], "properties": {
            "id": {"type": "integer", "minimum": 1, "maximum": 99},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2}}},
    }),
    _json_spec("refs_bounded", {
        "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9},
                                                          "y": {"type": "integer", "minimum": 0, "maximum": 9}},
                         "required": ["x", "y"]}},
        "type": "object", "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}},
        "required": ["a", "b"],
    }),
    _regex_spec("unicode_bounded", r"(héllo|日本語|café){1,3} [0-9]{1,3}"),
    _ebnf_spec("ebnf_pair", 'root ::= item ("," item)?\nitem ::= "yes" | "no"',
               lambda t: _regex_spec("", r"(yes|no)(,(yes|no))?").check(t)),
    _ebnf_spec("ebnf_nested", 'root ::= "(" inner ")"\ninner ::= "()" | "[]" | "{}"',
               lambda t: _regex_spec("", r"\((\(\)|\[\]|\{\})\)").check(t)),
]
SUITE = [s for s in SPECS if s.name in _BOUNDED] + EXTRA
_FIELD = {"json": "json_schema", "regex": "regex", "ebnf": "ebnf"}


def test_suite_is_large_enough():
    assert len(SUITE) >= 20


@pytest.fixture(scope="module", params=["xgrammar", "fsm", "lark"])
def harness(request):
    return SchedulerHarness(tiny_model_dir("llama"), grammar_backend=request.param, random_seed=3)


def _run(h: SchedulerHarness, spec: Spec, n: int, tag: str, **extra):
    prompts = ["Give me the data:", "Answer in the required format.", "x", "The result is"]
    for i in range(n):
        params = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 1.0, "seed": i,
                  _FIELD[spec.kind]: spec.spec, **extra}
        h.submit(f"{tag}-{i}", text=prompts[i % len(prompts)], params=params)
    results = h.run_until_idle()
    return [results[f"{tag}-{i}"] for i in range(n)]


@pytest.mark.parametrize("spec", SUITE, ids=lambda s: s.name)
def test_every_sample_is_valid(harness, spec):
    backend = harness.server_args.grammar_backend
    if backend not in spec.backends:
        pytest.skip(f"{backend} does not support {spec.kind}")
    outs = _run(harness, spec, SAMPLES, f"{backend}-{spec.name}")
    for res in outs:
        assert res.finished_reason["type"] == "stop", res.finished_reason
        text = harness.tokenizer.decode(res.output_ids, skip_special_tokens=True)
        spec.check(text)


@pytest.mark.parametrize("backend", ["xgrammar", "fsm"])
def test_jump_forward_saves_decode_steps_and_stays_valid(backend):
    pattern = r'The answer is (yes|no)\. My confidence is (high|low)\. Thank you for asking\.'
    spec = _regex_spec("jump", pattern)
    steps, jumped = {}, {}
    for disable in (False, True):
        h = SchedulerHarness(tiny_model_dir("llama"), grammar_backend=backend, disable_jump_forward=disable)
        outs = _run(h, spec, 4, "j")
        for res in outs:
            spec.check(h.tokenizer.decode(res.output_ids, skip_special_tokens=True))
        steps[disable] = h.scheduler.stats["decode_steps"]
        jumped[disable] = h.scheduler.state()["jump_forward_tokens"]
    print(f"{backend}: decode steps with jump-forward {steps[False]}, without {steps[True]}; "
          f"jumped tokens {jumped[False]}")
    assert jumped[False] > 0 and jumped[True] == 0
    assert steps[False] < steps[True] / 2


def test_jump_forward_is_skipped_when_it_would_stall_a_larger_batch():
    """The re-prefill path (--disable-in-batch-jump-forward): a short forced string (a few
    tokens) is jumped for a request running alone, but decoded step by step in a batch of 8: its
    re-prefill would cost the other 7 a forward pass. (In-batch jumps: test_jump_in_batch.py.)"""
    spec = _regex_spec("short", r"(yes|no)\. ok\. [a-z]{3}")
    for n, expect_jumps in ((1, True), (8, False)):
        h = SchedulerHarness(tiny_model_dir("llama"), disable_in_batch_jump_forward=True)
        for res in _run(h, spec, n, f"s{n}"):
            spec.check(h.tokenizer.decode(res.output_ids, skip_special_tokens=True))
        stats = h.scheduler.state()
        if expect_jumps:
            assert stats["jump_forward_events"] > 0 and stats["jump_forward_skipped"] == 0, stats
        else:  # the batch decodes the forced text; stragglers left alone may still jump (how many
            # depends on when the off-thread grammar compiles let each request join: 4 seen under load)
            assert stats["jump_forward_skipped"] >= 8, stats
            assert stats["jump_forward_events"] < stats["jump_forward_skipped"] / 2, stats


def test_grammar_ends_before_min_new_tokens(harness):
    """A grammar complete before min_new_tokens ends the request (the grammar wins) instead of
    leaving the sampler a row with nothing allowed."""
    spec = _regex_spec("digits", r"[0-9]{2,3}")
    for res in _run(harness, spec, 4, "minlen", min_new_tokens=20, max_new_tokens=30):
        assert res.finished_reason["type"] == "stop", res.finished_reason
        spec.check(harness.tokenizer.decode(res.output_ids, skip_special_tokens=True))
        assert len(res.output_ids) < 20


def test_invalid_grammar_aborts_only_its_request(harness):
    h = harness
    h.submit("bad-regex", text="x", params={"regex": "(unclosed", "max_new_tokens": 8})
    h.submit("bad-schema", text="x", params={"json_schema": '{"type": "nonsense"}', "max_new_tokens": 8})
    h.submit("bad-json", text="x", params={"json_schema": "{not json", "max_new_tokens": 8})
    h.submit("good", text="x", params={"regex": "[0-9]{3}", "max_new_tokens": 8})
    res = h.run_until_idle()
    for rid in ("bad-regex", "bad-schema", "bad-json"):
        reason = res[rid].finished_reason
        assert reason["type"] == "abort" and reason["status_code"] == 400 and "grammar" in reason["message"]
    assert re.fullmatch(r"[0-9]{3}", h.tokenizer.decode(res["good"].output_ids, skip_special_tokens=True))
    assert h.scheduler.check_memory_idle() is None


def test_json_object_response(harness):
    h = harness
    h.submit("obj", text="x", params={"json_schema": json.dumps({"type": "object", "properties": {
        "k": {"type": "string", "maxLength": 3}}, "required": ["k"]}), "temperature": 1.0, "max_new_tokens": 64})
    res = h.run_until_idle()["obj"]
    assert isinstance(json.loads(h.tokenizer.decode(res.output_ids, skip_special_tokens=True)), dict)


def test_stop_regex_finishes_and_is_trimmed():
    h = SchedulerHarness(tiny_model_dir("llama"))
    h.submit("base", text="Once upon a time", params={"max_new_tokens": 24, "temperature": 0, "ignore_eos": True})
    base = h.run_until_idle()["base"].output_ids
    text = h.tokenizer.decode(base, skip_special_tokens=True)
    target = text[3:6]
    h.submit("rx", text="Once upon a time", params={"max_new_tokens": 24, "temperature": 0, "ignore_eos": True,
                                                    "stop_regex": re.escape(target)})
    res = h.run_until_idle()["rx"]
    assert res.finished_reason == {"type": "stop", "matched": target}
    assert len(res.output_ids) < len(base)
    from sglang.runtime.sampling.sampling_params import SamplingParams

    with pytest.raises(ValueError, match="stop_regex"):
        SamplingParams.from_dict({"stop_regex": "("}).verify(1000)


@pytest.mark.parametrize("backend", ["xgrammar", "fsm"])
def test_jump_forward_with_chunked_prefill_logprobs_and_streaming(backend):
    pattern = r'\{"name": "[a-z]{1,6}", "city": "(Paris|Tokyo)", "ok": (true|false)\}'
    h = SchedulerHarness(tiny_model_dir("llama"), grammar_backend=backend, chunked_prefill_size=7)
    for i in range(6):
        h.submit(f"s{i}", text="Some record:", params={"max_new_tokens": 64, "temperature": 1.0, "seed": i,
                                                        "regex": pattern},
                 return_logprob=True, logprob_start_len=0, stream=bool(i % 2))
    res = h.run_until_idle()
    for i in range(6):
        r = res[f"s{i}"]
        assert re.fullmatch(pattern, h.tokenizer.decode(r.output_ids, skip_special_tokens=True))
        sampled = sum(len(d.output_token_logprobs) for d in r.logprobs)
        assert sampled < len(r.output_ids)  # jumped tokens carry no logprobs
    assert h.scheduler.state()["jump_forward_tokens"] > 0
    assert h.scheduler.check_memory_idle() is None
