"""Acceptance at the verify-function level: greedy acceptance is exact, and rejection sampling
keeps the target distribution (chi-square over 20k+ seeded samples, against the exact target
and against plain sampling)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Set

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare, chi2_contingency

from sglang.runtime.sampling.sampler import Sampler
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo
from sglang.runtime.sampling.sampling_params import SamplingParams
from sglang.runtime.speculative.rejection_sampler import target_probs, verify

V = 12
N = 24_000


@dataclass
class FakeReq:
    sampling_params: SamplingParams
    seed: int
    origin_input_ids: List[int] = field(default_factory=lambda: [1, 2])
    output_ids: List[int] = field(default_factory=list)
    eos_token_ids: Set[int] = field(default_factory=set)


def _params(**kw) -> SamplingParams:
    p = SamplingParams.from_dict(kw)
    p.normalize(None)
    return p


def _logits(seed: int, rows: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((rows, V), generator=g) * 1.5


def _row_info(params: SamplingParams, n: int, rows_per_req: int) -> SamplingBatchInfo:
    """Row j of request i: output position j, seed i (what the spec worker builds)."""
    reqs = [FakeReq(params, seed=i, output_ids=[0] * j) for i in range(n) for j in range(rows_per_req)]
    return SamplingBatchInfo.from_reqs(reqs, V, "cpu")


def test_greedy_accepts_exactly_the_matching_prefix():
    logits = _logits(0, 4)
    best = logits.argmax(-1).tolist()
    info = _row_info(_params(temperature=0), 1, 4)
    drafts = [[best[0], best[1], (best[2] + 1) % V]]
    out = verify(logits, drafts, info)
    assert out.accepted == [2]
    assert out.emitted == [[best[0], best[1], best[2]]]
    out = verify(logits[:1], [[]], _row_info(_params(temperature=0), 1, 1))
    assert out.emitted == [[best[0]]] and out.accepted == [0]


@pytest.mark.parametrize("kw", [
    {"temperature": 1.0},
    {"temperature": 0.7, "top_k": 6},
    {"temperature": 1.3, "top_p": 0.8, "min_p": 0.05},
], ids=["t1", "t0.7-topk", "t1.3-topp-minp"])
@pytest.mark.parametrize("draft_rank", [0, 3], ids=["likely-draft", "unlikely-draft"])
def test_rejection_sampling_keeps_the_target_distribution(kw, draft_rank):
    params = _params(**kw)
    base = _logits(1, 3)  # rows: check d0, check d1, bonus
    info = _row_info(params, N, 3)
    logits = base.repeat(N, 1)
    p = target_probs(base, _row_info(params, 1, 3))
    order = p[0].argsort(descending=True).tolist()
    d0 = order[draft_rank]
    d1 = p[1].argmax().item()
    out = verify(logits, [[d0, d1]] * N, info)
    first = torch.tensor([e[0] for e in out.emitted])
    _assert_matches(first, p[0])
    # Given the first draft was accepted, the next token follows row 1's distribution.
    second = torch.tensor([e[1] for e in out.emitted if e[0] == d0 and len(e) > 1])
    assert len(second) > 1000
    _assert_matches(second, p[1])
    # And the first token is distributed as plain sampling's (same seeds, same positions).
    plain = Sampler().sample(base[:1].repeat(N, 1), _row_info(params, N, 1))
    _assert_same(first, plain)


def test_draft_outside_top_k_is_never_accepted():
    params = _params(temperature=1.0, top_k=2)
    base = _logits(2, 2)
    d = base[0].argsort().tolist()[0]  # the least likely token
    out = verify(base.repeat(2000, 1), [[d]] * 2000, _row_info(params, 2000, 2))
    assert all(a == 0 for a in out.accepted)
    assert all(e[0] != d for e in out.emitted)


def _assert_matches(samples: torch.Tensor, probs: torch.Tensor) -> None:
    counts = torch.bincount(samples, minlength=V).double()
    support = probs > 0
    assert counts[~support].sum() == 0, "a token outside the target's support was emitted"
    target = probs[support].double()
    expected = target / target.sum() * counts.sum()
    stat = chisquare(counts[support].numpy(), expected.numpy())
    assert stat.pvalue > 1e-3, (counts.tolist(), expected.tolist(), stat)


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    table = torch.stack([torch.bincount(a, minlength=V), torch.bincount(b, minlength=V)]).numpy()
    table = table[:, table.sum(0) > 0]
    assert chi2_contingency(table).pvalue > 1e-3, table


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(0, 4), min_size=1, max_size=4))
def test_greedy_emits_what_sequential_argmax_would(seed, draft_lens):
    """For any drafts, greedy verification emits the argmax chain: each draft kept only while it
    equals its row's argmax, then exactly one argmax token."""
    g = torch.Generator().manual_seed(seed)
    rows = sum(n + 1 for n in draft_lens)
    logits = torch.randn((rows, V), generator=g)
    best = logits.argmax(-1).tolist()
    drafts, row = [], 0
    for n in draft_lens:
        # Drafts that mostly follow the argmax, with random deviations.
        drafts.append([best[row + j] if torch.rand((), generator=g) < 0.7 else int(torch.randint(V, (), generator=g))
                       for j in range(n)])
        row += n + 1
    reqs = [FakeReq(_params(temperature=0), seed=i) for i in range(rows)]
    out = verify(logits, drafts, SamplingBatchInfo.from_reqs(reqs, V, "cpu"))
    row = 0
    for draft, emitted, accepted in zip(drafts, out.emitted, out.accepted):
        expect = []
        for j in range(len(draft) + 1):
            expect.append(best[row + j])
            if j == len(draft) or draft[j] != best[row + j]:
                break
        assert emitted == expect and accepted == len(expect) - 1
        row += len(draft) + 1
