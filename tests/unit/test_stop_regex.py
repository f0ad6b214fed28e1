"""stop_regex patterns: refused with a ValueError when they cannot compile (a repeat count too
large raised OverflowError, which became an HTTP 500) or their repetitions multiply out too far,
and searched with a time bound (a catastrophically backtracking pattern used to hang the
scheduler loop). All found by tests/server/test_fuzz_http.py."""

from __future__ import annotations

import time

import pytest

from sglang.runtime.sampling.sampling_params import SamplingParams
from sglang.runtime.sampling.stop_regex import STOP_REGEX_TIMEOUT_S, StopRegexTimeout, find_new_match

# Exponential for a backtracking engine on a run of commas that is not followed by a NUL.
CATASTROPHIC = r"(.*?,){30}\x00"


@pytest.mark.parametrize("pattern", ["a{1000000000000000000000000000000}", "(x{99999999999999999999,})",
                                     "a{2,1}", "(", "[z-a]"])
def test_uncompilable_stop_regex_is_a_value_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="stop_regex .* is not a valid regular expression"):
        SamplingParams.from_dict({"stop_regex": [pattern]}).verify(1000)


@pytest.mark.parametrize("pattern", ["a{1000000}", "(?:a{1000}){1000}", "(?:(?:x)??){1000000,}", "a{4294967294}"])
def test_repetitions_multiplying_out_too_far_are_refused(pattern: str) -> None:
    """The regex package compiles a{n} as n copies: a{1000000} took 276 MB, a{4294967294} was
    OOM-killed (found by the HTTP fuzz test's memory bound). Refused before compiling."""
    with pytest.raises(ValueError, match="MAX_STOP_REGEX_CHARS"):
        SamplingParams.from_dict({"stop_regex": pattern}).verify(1000)


@pytest.mark.parametrize("depth", [200, 400])
def test_deeply_nested_pattern_is_a_value_error(depth: int) -> None:
    """re compiles 200 nested groups, but measuring them recursed too deep: RecursionError, an
    HTTP 500 (found by the HTTP fuzz test)."""
    with pytest.raises(ValueError, match="stop_regex"):
        SamplingParams.from_dict({"stop_regex": "(" * depth + "a" + "|b)" * depth}).verify(1000)


@pytest.mark.parametrize("pattern", ["a{0,1000000}", "(ab|c){1000}", r"\d+", "(x|y){5,2048}"])
def test_patterns_that_stay_small_are_accepted(pattern: str) -> None:
    params = SamplingParams.from_dict({"stop_regex": pattern})
    params.verify(1000)  # raises ValueError when refused
    assert params.stop_regex == pattern


def test_catastrophic_pattern_times_out() -> None:
    start = time.monotonic()
    with pytest.raises(StopRegexTimeout, match="took longer than"):
        find_new_match([CATASTROPHIC], "," * 64, newest_chars=1)
    assert time.monotonic() - start < 20 * STOP_REGEX_TIMEOUT_S + 5  # generous: the bound exists


def test_match_must_end_in_the_newest_text() -> None:
    assert find_new_match([r"b+"], "abba", newest_chars=1) is None  # ended before the new char
    assert find_new_match([r"x", r"b+a"], "abba", newest_chars=1) == "bba"
    assert find_new_match([r"z*"], "abba", newest_chars=2) is None  # empty matches never stop
