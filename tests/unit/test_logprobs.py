"""Logprob helpers: values, per-row options, one log_softmax per call."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sglang.runtime.sampling.logprobs as lp


def logits_of(rows: int, vocab: int = 20, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 4


def reference(logits: torch.Tensor) -> torch.Tensor:
    """log softmax in float64, written out."""
    x = logits.double()
    return x - torch.logsumexp(x, dim=-1, keepdim=True)


def test_token_logprobs_are_log_softmax_of_raw_logits() -> None:
    logits = logits_of(4)
    ids = torch.tensor([0, 5, 19, 7])
    got = lp.token_logprobs(logits, ids)
    want = reference(logits)[torch.arange(4), ids]
    assert got.shape == (4,) and got.dtype == torch.float32
    assert torch.allclose(got.double(), want, atol=1e-5)
    assert bool((got <= 0).all())


def test_top_logprobs_per_row_k_sorted_and_correct() -> None:
    logits = logits_of(3)
    ks = [0, 3, 5]
    got = lp.top_logprobs(logits, ks)
    ref = reference(logits)
    assert [len(r) for r in got] == ks
    for row, entries in enumerate(got):
        values = [v for v, _ in entries]
        assert values == sorted(values, reverse=True)
        expected_ids = ref[row].argsort(descending=True)[: len(entries)].tolist()
        assert [t for _, t in entries] == expected_ids
        for value, token in entries:
            assert isinstance(token, int) and isinstance(value, float)
            assert value == pytest.approx(float(ref[row, token]), abs=1e-5)


def test_top_logprobs_skips_work_when_all_k_zero() -> None:
    # A meta tensor has no data: any actual computation followed by .tolist() would fail.
    meta = torch.empty(3, 20, device="meta")
    assert lp.top_logprobs(meta, [0, 0, 0]) == [[], [], []]
    assert lp.token_ids_logprobs(meta, [None, None, None]) == [None, None, None]


def test_top_logprobs_k_larger_than_vocab_is_clamped() -> None:
    got = lp.top_logprobs(logits_of(1, vocab=6), [50])
    assert len(got[0]) == 6
    assert math.isclose(sum(math.exp(v) for v, _ in got[0]), 1.0, rel_tol=1e-5)


def test_negative_k_is_rejected() -> None:
    with pytest.raises(ValueError, match="top logprobs counts must be >= 0, got -1"):
        lp.top_logprobs(logits_of(2), [2, -1])


def test_token_ids_logprobs_keeps_order_and_none_rows() -> None:
    logits = logits_of(3)
    ref = reference(logits)
    got = lp.token_ids_logprobs(logits, [[4, 1, 4], None, []])
    assert got[1] is None and got[2] == []
    assert [t for _, t in got[0]] == [4, 1, 4]
    for value, token in got[0]:
        assert value == pytest.approx(float(ref[0, token]), abs=1e-5)


def test_token_ids_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"token_ids_logprob entries must be token ids in \[0, 20\), got 20"):
        lp.token_ids_logprobs(logits_of(1), [[3, 20]])


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda x: lp.token_logprobs(x, torch.tensor([1])), "token_ids has 1 rows but logits have 2"),
        (lambda x: lp.top_logprobs(x, [1, 2, 3]), "ks has 3 rows but logits have 2"),
        (lambda x: lp.token_ids_logprobs(x, [[1]]), "ids_per_row has 1 rows but logits have 2"),
        (lambda x: lp.compute_logprobs(x, torch.tensor([1, 2]), [1]), "top_ks has 1 rows but logits have 2"),
    ],
)
def test_row_count_mismatch_is_a_clear_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(logits_of(2))


def test_compute_logprobs_matches_single_views_with_one_log_softmax(monkeypatch: pytest.MonkeyPatch) -> None:
    logits = logits_of(4)
    ids = torch.tensor([1, 2, 3, 4])
    ks = [2, 0, 1, 4]
    per_row = [[0, 9], None, [19], None]
    expected = (lp.token_logprobs(logits, ids).tolist(), lp.top_logprobs(logits, ks), lp.token_ids_logprobs(logits, per_row))

    calls = []
    real = lp.log_softmax
    monkeypatch.setattr(lp, "log_softmax", lambda x: calls.append(1) or real(x))
    result = lp.compute_logprobs(logits, ids, ks, per_row)
    assert len(calls) == 1
    assert result.token_logprobs == expected[0]
    assert result.top_logprobs == expected[1]
    assert result.token_ids_logprobs == expected[2]
    assert result.top_logprobs[1] == [] and result.token_ids_logprobs[1] is None


def test_compute_logprobs_defaults_and_bfloat16_input() -> None:
    logits = logits_of(2).to(torch.bfloat16)
    result = lp.compute_logprobs(logits, torch.tensor([3, 4]))
    assert result.top_logprobs == [[], []] and result.token_ids_logprobs == [None, None]
    want = reference(logits.float())[[0, 1], [3, 4]].tolist()
    assert result.token_logprobs == pytest.approx(want, abs=1e-4)


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 5),
    vocab=st.integers(2, 40),
    scale=st.floats(0.0, 50.0),
    seed=st.integers(0, 10_000),
)
def test_full_top_k_is_a_normalised_distribution(rows: int, vocab: int, scale: float, seed: int) -> None:
    logits = logits_of(rows, vocab, seed) * scale
    for entries in lp.top_logprobs(logits, [vocab] * rows):
        assert len({t for _, t in entries}) == vocab
        assert all(v <= 1e-6 for v, _ in entries)
        assert math.isclose(sum(math.exp(v) for v, _ in entries), 1.0, rel_tol=1e-4)
