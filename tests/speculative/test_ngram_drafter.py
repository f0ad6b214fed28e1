"""NGRAM drafting: proposals continue an earlier occurrence of the text's suffix."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.speculative.ngram_drafter import NgramDrafter


def test_continues_the_latest_earlier_occurrence():
    d = NgramDrafter(1, 4)
    assert d.propose([1, 2, 3, 4, 5, 9, 1, 2, 3], 4) == [4, 5, 9, 1]
    # Two occurrences of the suffix [7]: the latest one (followed by 8) wins over the first.
    assert d.propose([7, 1, 7, 8, 0, 7], 2) == [8, 0]


def test_longer_suffix_wins_over_a_later_shorter_one():
    d = NgramDrafter(1, 3)
    # [5, 6] recurs at the start (-> 10); [6] alone recurs later (-> 20).
    assert d.propose([5, 6, 10, 6, 20, 5, 6], 1) == [10]


def test_no_match_and_limits():
    d = NgramDrafter(2, 4)
    assert d.propose([1, 2, 3, 4], 3) == []  # no 2-token suffix recurs
    assert d.propose([1, 2, 1, 2], 0) == []
    assert d.propose([1], 3) == []
    assert NgramDrafter(1, 2).propose([4, 4, 4, 4], 3) == [4]  # overlapping match: what follows it


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=60), st.integers(1, 6), st.integers(1, 4))
def test_proposal_is_what_followed_an_earlier_copy_of_the_suffix(tokens, k, max_window):
    draft = NgramDrafter(1, max_window).propose(tokens, k)
    assert len(draft) <= k
    if not draft:
        assert tokens[-1] not in tokens[:-1]  # a 1-token suffix that recurs always drafts
        return
    n_tok = len(tokens)
    ok = False
    for n in range(1, max_window + 1):
        for s in range(n_tok - n):
            if tokens[s:s + n] == tokens[n_tok - n:] and tokens[s + n:s + n + len(draft)] == draft:
                ok = True
    assert ok, (tokens, draft)
