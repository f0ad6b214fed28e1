"""The three select choice methods, checked against their definitions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.lang.choices import (
    ChoicesDecision,
    ChoicesSamplingMethod,
    greedy_token_selection,
    token_length_normalized,
    unconditional_likelihood_normalized,
)


def call(method: ChoicesSamplingMethod, choices, lps, uncond=None) -> ChoicesDecision:
    norm = [sum(x) / len(x) if x else -1e9 for x in lps]
    return method(choices, norm, lps, [[] for _ in choices], uncond)


def test_properties_and_types() -> None:
    assert isinstance(token_length_normalized, ChoicesSamplingMethod)
    assert not token_length_normalized.requires_unconditional_logprobs
    assert not greedy_token_selection.requires_unconditional_logprobs
    assert unconditional_likelihood_normalized.requires_unconditional_logprobs


def test_token_length_normalized_hand_made() -> None:
    # means: -1.0, -0.5, -0.75 -> "b", although "a" has the best total of one token.
    d = call(token_length_normalized, ["a", "b", "c"], [[-1.0], [-0.2, -0.8], [-0.5, -1.0]])
    assert d.decision == "b"
    assert d.meta_info["scores"] == pytest.approx([-1.0, -0.5, -0.75])
    # ties go to the first choice
    assert call(token_length_normalized, ["x", "y"], [[-1.0, -3.0], [-2.0]]).decision == "x"
    # server-style (logprob, token_id, text) tuples are accepted
    d = token_length_normalized(["p", "q"], [], [[(-3.0, 1, "p")], [(-0.1, 2, "q")]], [[], []])
    assert d.decision == "q"


def test_greedy_token_selection_hand_made() -> None:
    # First token decides: "b" has the best first token despite a terrible mean.
    d = call(greedy_token_selection, ["a", "b"], [[-0.5, -0.1], [-0.4, -9.0]])
    assert d.decision == "b"
    # Shared first token (-0.3 each) -> the second token decides among the survivors only.
    d = call(greedy_token_selection, ["a", "b", "c"], [[-0.3, -2.0], [-0.3, -1.0], [-1.0, -0.0]])
    assert d.decision == "b" and d.meta_info["greedy_survivors"] == [1]
    # "ab" runs out after one token: it then scores its mean (-0.3) against -0.5 and wins.
    d = call(greedy_token_selection, ["ab", "abc"], [[-0.3], [-0.3, -0.5]])
    assert d.decision == "ab"
    d = call(greedy_token_selection, ["ab", "abc"], [[-0.3], [-0.3, -0.1]])
    assert d.decision == "abc"
    # Identical sequences: first wins.
    assert call(greedy_token_selection, ["u", "v"], [[-1.0, -2.0], [-1.0, -2.0]]).decision == "u"


def test_unconditional_hand_made() -> None:
    cond = [[-1.0, -1.0], [-2.0, -2.0]]
    uncond = [[-1.5, -1.0], [-5.0, -4.0]]  # diffs: mean 0.25 vs 2.5
    d = call(unconditional_likelihood_normalized, ["common", "rare"], cond, uncond)
    assert d.decision == "rare"
    assert d.meta_info["scores"] == pytest.approx([0.25, 2.5])
    with pytest.raises(ValueError):
        call(unconditional_likelihood_normalized, ["a"], [[-1.0]])
    with pytest.raises(ValueError):
        call(unconditional_likelihood_normalized, ["a"], [[-1.0]], [[-1.0, -2.0]])


def test_input_validation() -> None:
    with pytest.raises(ValueError):
        call(token_length_normalized, [], [])
    with pytest.raises(ValueError):
        token_length_normalized(["a", "b"], [-1.0, -2.0], [[-1.0]], [[]])


LOGPROB = st.floats(min_value=-20.0, max_value=0.0, allow_nan=False)
CASES = st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.lists(st.lists(LOGPROB, min_size=1, max_size=6), min_size=n, max_size=n),
    st.lists(st.lists(LOGPROB, min_size=6, max_size=6), min_size=n, max_size=n)))


def _reference_greedy(lps: list[list[float]]) -> int:
    """Independent restatement of the documented rule via padded rows."""
    width = max(map(len, lps))
    rows = [lp + [math.fsum(lp) / len(lp)] * (width - len(lp)) for lp in lps]
    alive = list(range(len(lps)))
    for j in range(width):
        if len(alive) == 1:
            break
        best = max(rows[i][j] for i in alive)
        alive = [i for i in alive if rows[i][j] == best]
    return alive[0]


@settings(max_examples=150, deadline=None)
@given(CASES)
def test_methods_against_definitions(case) -> None:
    lps, uncond_pool = case
    choices = [f"choice{i}" for i in range(len(lps))]
    uncond = [u[:len(c)] for c, u in zip(lps, uncond_pool)]
    for method in (token_length_normalized, greedy_token_selection,
                   unconditional_likelihood_normalized):
        assert call(method, choices, lps, uncond).decision in choices

    means = [math.fsum(x) / len(x) for x in lps]
    assert call(token_length_normalized, choices, lps).decision == choices[means.index(max(means))]

    assert call(greedy_token_selection, choices, lps).decision == choices[_reference_greedy(lps)]

    diffs = [math.fsum(a - b for a, b in zip(c, u)) / len(c) for c, u in zip(lps, uncond)]
    got = call(unconditional_likelihood_normalized, choices, lps, uncond).decision
    assert got == choices[diffs.index(max(diffs))]
