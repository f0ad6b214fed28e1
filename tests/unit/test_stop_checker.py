"""StopStringMatcher: incremental search finds stop strings split across chunks, and the safe
prefix never lets the beginning of a stop string through."""

from __future__ import annotations

from typing import List, Optional, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.managers.stop_checker import StopStringMatcher

ALPHABET = "ab c日"
texts = st.text(alphabet=ALPHABET, max_size=40)
stop_lists = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), min_size=1, max_size=4)
cut_points = st.lists(st.integers(0, 40), max_size=8)


def earliest_occurrence(text: str, stops: List[str]) -> Optional[Tuple[int, str]]:
    """Brute force: the smallest start of any stop string in text (first listed wins ties)."""
    hits = [(text.find(s), k, s) for k, s in enumerate(stops) if s in text]
    if not hits:
        return None
    start, _, stop = min(hits)
    return start, stop


def longest_held_suffix(text: str, stops: List[str]) -> int:
    """Brute force: length of the longest suffix that is a proper prefix of some stop string."""
    best = 0
    for size in range(1, len(text) + 1):
        suffix = text[len(text) - size:]
        if any(len(s) > size and s.startswith(suffix) for s in stops):
            best = size
    return best


@settings(max_examples=400, deadline=None)
@given(text=texts, stops=stop_lists, cuts=cut_points)
def test_incremental_find_matches_brute_force(text, stops, cuts):
    """Feeding the text in chunks, the first hit is the earliest occurrence in the text seen
    so far, even when the stop string straddles chunk boundaries."""
    matcher = StopStringMatcher(stops)
    boundaries = sorted({min(c, len(text)) for c in cuts} | {len(text)})
    seen = 0
    for end in boundaries:
        hit = matcher.find(text[:end], seen)
        expected = earliest_occurrence(text[:end], stops)
        if expected is not None:
            assert hit == expected
            return
        assert hit is None
        seen = end
    assert earliest_occurrence(text, stops) is None


@settings(max_examples=400, deadline=None)
@given(text=texts, stops=stop_lists)
def test_safe_prefix_holds_back_exactly_the_longest_stop_prefix(text, stops):
    matcher = StopStringMatcher(stops)
    assert matcher.safe_prefix_len(text) == len(text) - longest_held_suffix(text, stops)


@settings(max_examples=300, deadline=None)
@given(text=texts, stops=stop_lists, cuts=cut_points)
def test_streaming_with_safe_prefix_never_shows_stop_text(text, stops, cuts):
    """Simulate a stream: after each chunk show the safe prefix; stop at the first hit. What was
    shown never reaches into the stop string that ends the stream, nor contains any other."""
    matcher = StopStringMatcher(stops)
    shown, seen = 0, 0
    for end in sorted({min(c, len(text)) for c in cuts} | {len(text)}):
        hit = matcher.find(text[:end], seen)
        seen = end
        if hit is not None:
            assert shown <= hit[0]
            return
        shown = max(shown, matcher.safe_prefix_len(text[:end]))
        assert earliest_occurrence(text[:shown], stops) is None
        # Whatever was held back could still grow into a stop string.
        held = text[shown:end]
        assert not held or any(s.startswith(held) for s in stops)


def test_find_only_reports_occurrences_reaching_new_text():
    matcher = StopStringMatcher(["END"])
    assert matcher.find("xxENDyy", 5) is None  # "END" ended before the new text
    assert matcher.find("xxENDyy", 4) == (2, "END")  # its last character is new


def test_split_stop_string_is_found_across_chunks():
    matcher = StopStringMatcher(["</answer>"])
    text = "result: 42</ans"
    assert matcher.find(text, 0) is None
    assert matcher.safe_prefix_len(text) == len("result: 42")
    text += "wer> trailing"
    assert matcher.find(text, len("result: 42</ans")) == (10, "</answer>")


def test_empty_and_missing_stop_lists():
    for stops in (None, [], [""]):
        matcher = StopStringMatcher(stops)
        assert not matcher
        assert matcher.find("anything", 0) is None
        assert matcher.safe_prefix_len("anything") == len("anything")


def test_duplicate_and_empty_entries_are_dropped():
    matcher = StopStringMatcher(["ab", "", "ab", "c"])
    assert matcher.stop_strs == ["ab", "c"]
    assert matcher.max_len == 2
