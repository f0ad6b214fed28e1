"""stop_regex patterns: refused with a ValueError when they cannot compile (a repeat count too
large raised OverflowError, which became an HTTP 500), and searched with a time bound (a
catastrophically backtracking pattern used to hang the scheduler loop). Both found by
tests/server/test_fuzz_http.py."""

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


def test_catastrophic_pattern_times_out() -> None:
    start = time.monotonic()
    with pytest.raises(StopRegexTimeout, match="took longer than"):
        find_new_match([CATASTROPHIC], "," * 64, newest_chars=1)
    assert time.monotonic() - start < 20 * STOP_REGEX_TIMEOUT_S + 5  # generous: the bound exists


def test_match_must_end_in_the_newest_text() -> None:
    assert find_new_match([r"b+"], "abba", newest_chars=1) is None  # ended before the new char
    assert find_new_match([r"x", r"b+a"], "abba", newest_chars=1) == "bba"
    assert find_new_match([r"z*"], "abba", newest_chars=2) is None  # empty matches never stop
