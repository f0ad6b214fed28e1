"""SamplingParams: defaults, parsing, validation messages, normalization."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.sampling.sampling_params import SamplingParams

VOCAB = 100


class CharTokenizer:
    """Stands in for a HF tokenizer: one token per character, plus a special token if asked."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list:
        ids = [ord(c) % VOCAB for c in text]
        return ([0] + ids) if add_special_tokens else ids


def test_defaults_match_upstream_names_and_values() -> None:
    p = SamplingParams()
    expected = dict(
        max_new_tokens=128, min_new_tokens=0, temperature=1.0, top_p=1.0, top_k=-1, min_p=0.0,
        frequency_penalty=0.0, presence_penalty=0.0, repetition_penalty=1.0, stop=None,
        stop_token_ids=None, ignore_eos=False, skip_special_tokens=True,
        spaces_between_special_tokens=True, no_stop_trim=False, logit_bias=None, n=1, seed=None,
        regex=None, json_schema=None, ebnf=None, lark=None, stop_regex=None, custom_params=None,
    )
    assert p.to_dict() == expected
    p.verify(VOCAB)  # defaults are valid


def test_from_dict_none_and_null_values_keep_defaults() -> None:
    assert SamplingParams.from_dict(None) == SamplingParams()
    p = SamplingParams.from_dict({"temperature": None, "max_new_tokens": 7})
    assert p.temperature == 1.0 and p.max_new_tokens == 7


def test_from_dict_coerces_int_to_float_and_keeps_values() -> None:
    p = SamplingParams.from_dict({"temperature": 1, "top_p": 0.5, "stop": ["a"], "logit_bias": {"3": -1}})
    assert isinstance(p.temperature, float) and p.temperature == 1.0
    assert p.top_p == 0.5 and p.stop == ["a"] and p.logit_bias == {"3": -1}


def test_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match="unknown sampling parameter 'foo'"):
        SamplingParams.from_dict({"foo": 1})


def test_from_dict_rejects_derived_fields() -> None:
    with pytest.raises(ValueError, match="unknown sampling parameter 'stop_str_max_len'"):
        SamplingParams.from_dict({"stop_str_max_len": 3})


def test_from_dict_rejects_non_dict() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        SamplingParams.from_dict([("temperature", 1.0)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("temperature", True, "temperature must be a number"),
        ("temperature", "0.5", "temperature must be a number"),
        ("temperature", float("nan"), "temperature must be a finite number"),
        ("top_p", float("inf"), "top_p must be a finite number"),
        ("min_p", [0.1], "min_p must be a number"),
        ("frequency_penalty", False, "frequency_penalty must be a number"),
        ("presence_penalty", "x", "presence_penalty must be a number"),
        ("repetition_penalty", "1", "repetition_penalty must be a number"),
        ("top_k", 1.5, "top_k must be an integer"),
        ("top_k", True, "top_k must be an integer"),
        ("max_new_tokens", 16.0, "max_new_tokens must be an integer"),
        ("min_new_tokens", "2", "min_new_tokens must be an integer"),
        ("n", 2.0, "n must be an integer"),
        ("seed", "42", "seed must be an integer"),
        ("seed", True, "seed must be an integer"),
        ("ignore_eos", "yes", "ignore_eos must be true or false"),
        ("skip_special_tokens", 1, "skip_special_tokens must be true or false"),
        ("spaces_between_special_tokens", 0, "spaces_between_special_tokens must be true or false"),
        ("no_stop_trim", "false", "no_stop_trim must be true or false"),
        ("stop", 5, "stop must be a string or a list of strings"),
        ("stop", ["a", 1], "stop must be a string or a list of strings"),
        ("stop_regex", {"a": 1}, "stop_regex must be a string or a list of strings"),
        ("stop_token_ids", "1", "stop_token_ids must be a list"),
        ("stop_token_ids", [1, 2.0], "stop_token_ids entries must be an integer"),
        ("stop_token_ids", [True], "stop_token_ids entries must be an integer"),
        ("logit_bias", [1, 2], "logit_bias must be an object"),
        ("logit_bias", {"1": "big"}, r"logit_bias\['1'\] must be a number"),
        ("logit_bias", {"1": float("-inf")}, r"logit_bias\['1'\] must be a finite number"),
        ("regex", 3, "regex must be a string"),
        ("json_schema", {"type": "object"}, "json_schema must be a string .serialize the schema with json.dumps"),
        ("ebnf", ["root ::= 'a'"], "ebnf must be a string"),
        ("custom_params", [1], "custom_params must be an object"),
    ],
)
def test_from_dict_rejects_wrong_types(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams.from_dict({key: value})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"temperature": -0.1}, r"temperature must be in \[0, inf\), got -0.1"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.01}, r"top_p must be in \(0, 1\]"),
        ({"top_k": 0}, "top_k must be -1 .the whole vocabulary. or >= 1, got 0"),
        ({"top_k": -2}, "top_k must be -1 .the whole vocabulary. or >= 1, got -2"),
        ({"min_p": -0.01}, r"min_p must be in \[0, 1\]"),
        ({"min_p": 1.5}, r"min_p must be in \[0, 1\]"),
        ({"frequency_penalty": -2.5}, r"frequency_penalty must be in \[-2, 2\]"),
        ({"frequency_penalty": 2.01}, r"frequency_penalty must be in \[-2, 2\]"),
        ({"presence_penalty": 3.0}, r"presence_penalty must be in \[-2, 2\]"),
        ({"presence_penalty": -3.0}, r"presence_penalty must be in \[-2, 2\]"),
        ({"repetition_penalty": 0.0}, r"repetition_penalty must be in \(0, 2\]"),
        ({"repetition_penalty": 2.5}, r"repetition_penalty must be in \(0, 2\]"),
        ({"max_new_tokens": -1}, "max_new_tokens must be >= 0, got -1"),
        ({"min_new_tokens": -1}, r"min_new_tokens must be in \[0, max_new_tokens=128\], got -1"),
        ({"min_new_tokens": 9, "max_new_tokens": 8}, r"min_new_tokens must be in \[0, max_new_tokens=8\], got 9"),
        ({"n": 0}, "n must be >= 1, got 0"),
        ({"stop": ["ok", ""]}, "stop strings must be non-empty"),
        ({"stop": ""}, "stop strings must be non-empty"),
        ({"stop_token_ids": [5, VOCAB]}, rf"stop_token_ids entries must be in \[0, {VOCAB}\), got {VOCAB}"),
        ({"stop_token_ids": [-1]}, rf"stop_token_ids entries must be in \[0, {VOCAB}\), got -1"),
        ({"logit_bias": {"abc": 1.0}}, rf"logit_bias keys must be token ids in \[0, {VOCAB}\), got 'abc'"),
        ({"logit_bias": {str(VOCAB): 1.0}}, rf"logit_bias keys must be token ids in \[0, {VOCAB}\)"),
        ({"logit_bias": {"-1": 1.0}}, rf"logit_bias keys must be token ids in \[0, {VOCAB}\)"),
        ({"logit_bias": {True: 1.0}}, "logit_bias keys must be token ids"),
        # OpenAI's range; 1e308 used to overflow the logits and make the sampler emit token 0.
        ({"logit_bias": {"5": 1e308}}, r"logit_bias\['5'\] must be in \[-100, 100\], got 1e\+308"),
        ({"logit_bias": {"5": 100.5}}, r"logit_bias\['5'\] must be in \[-100, 100\]"),
        ({"logit_bias": {7: -101}}, r"logit_bias\[7\] must be in \[-100, 100\]"),
        ({"regex": "a+", "json_schema": "{}"}, "only one of regex, json_schema, ebnf, lark may be set; got regex, json_schema"),
        ({"ebnf": "root ::= 'a'", "regex": "a"}, "only one of regex, json_schema, ebnf, lark may be set; got regex, ebnf"),
        ({"temperature": True}, "temperature must be a number"),  # verify re-checks types
        ({"seed": 1.0}, "seed must be an integer"),
    ],
)
def test_verify_rejects_out_of_range(kwargs: dict, message: str) -> None:
    params = SamplingParams(**kwargs)
    with pytest.raises(ValueError, match=message):
        params.verify(VOCAB)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.0},
        {"temperature": 100.0},
        {"top_p": 1.0},
        {"top_p": 1e-9},
        {"top_k": 1},
        {"top_k": VOCAB * 10},  # larger than the vocabulary means "all"
        {"min_p": 1.0},
        {"frequency_penalty": -2.0, "presence_penalty": 2.0},
        {"repetition_penalty": 2.0},
        {"repetition_penalty": 1e-3},
        {"max_new_tokens": 0},
        {"min_new_tokens": 5, "max_new_tokens": 5},
        {"stop_token_ids": [0, VOCAB - 1]},
        {"logit_bias": {"0": -100.0, VOCAB - 1: 5}},
        {"logit_bias": {"1": 100}},
        {"seed": -(2**70)},
        {"json_schema": '{"type": "object"}', "stop_regex": ["\\d+"]},
        {"custom_params": {"anything": [1, 2]}},
    ],
)
def test_verify_accepts_boundary_values(kwargs: dict) -> None:
    params = SamplingParams.from_dict(kwargs)
    params.verify(VOCAB)  # raises on rejection
    assert all(getattr(params, key) == value for key, value in kwargs.items() if not isinstance(value, dict))


def test_normalize_stop_list_and_lengths() -> None:
    p = SamplingParams(stop="abc")
    p.normalize(CharTokenizer())
    assert p.stop == ["abc"]
    q = SamplingParams(stop=["x", "longer"])
    q.normalize(CharTokenizer())
    # Character bound and token bound (without special tokens: 6, not 7).
    assert (q.stop_str_max_len, q.stop_str_max_tokens) == (6, 6)
    r = SamplingParams()
    r.normalize(None)
    assert r.stop == [] and r.stop_str_max_len == 0 and r.stop_str_max_tokens == 0


def test_normalize_token_bound_uses_tokenizer() -> None:
    class PairTokenizer:
        def encode(self, text: str, add_special_tokens: bool = True) -> list:
            return list(range((len(text) + 1) // 2))

    p = SamplingParams(stop=["abcde"])
    p.normalize(PairTokenizer())
    assert p.stop_str_max_len == 5 and p.stop_str_max_tokens == 3


@pytest.mark.parametrize("temperature", [0.0, 1e-7])
def test_normalize_turns_near_zero_temperature_into_top_k_1(temperature: float) -> None:
    p = SamplingParams(temperature=temperature, top_k=40)
    assert p.is_greedy
    p.normalize(None)
    assert (p.top_k, p.temperature) == (1, 1.0)
    assert p.is_greedy
    p.normalize(None)  # idempotent
    assert (p.top_k, p.temperature) == (1, 1.0)


def test_normalize_keeps_sampling_temperature() -> None:
    p = SamplingParams(temperature=0.7, top_k=40)
    assert not p.is_greedy
    p.normalize(None)
    assert (p.top_k, p.temperature) == (40, 0.7)


def test_to_dict_round_trips_and_hides_derived_fields() -> None:
    p = SamplingParams.from_dict({"temperature": 0.3, "stop": ["\n"], "logit_bias": {"1": 2.0}, "seed": 9})
    p.normalize(CharTokenizer())
    d = p.to_dict()
    assert "stop_str_max_len" not in d and "stop_str_max_tokens" not in d
    again = SamplingParams.from_dict(d)
    assert again.to_dict() == d
    d["stop"].append("mutated")  # the echo is a copy
    assert p.stop == ["\n"]


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_temperature_valid_iff_finite_and_non_negative(t: float) -> None:
    params = SamplingParams(temperature=t)
    if math.isfinite(t) and t >= 0:
        params.verify(VOCAB)
    else:
        with pytest.raises(ValueError, match="temperature"):
            params.verify(VOCAB)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-5, max_value=5))
def test_top_p_valid_iff_in_half_open_unit_interval(top_p: float) -> None:
    params = SamplingParams(top_p=top_p)
    if 0 < top_p <= 1:
        params.verify(VOCAB)
    else:
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
            params.verify(VOCAB)
