"""Batched sampling: greedy, seeded reproducibility, distributions, filters, logits processors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Set

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.sampling.penalties import apply_logits_processors
from sglang.runtime.sampling.sampler import Sampler, _mul32, mix32, uniform_noise
from sglang.runtime.sampling.sampling_batch_info import SamplingBatchInfo
from sglang.runtime.sampling.sampling_params import SamplingParams

V = 64


@dataclass
class FakeReq:
    sampling_params: SamplingParams
    seed: int = 0
    origin_input_ids: List[int] = field(default_factory=lambda: [1, 2, 3])
    output_ids: List[int] = field(default_factory=list)
    eos_token_ids: Set[int] = field(default_factory=lambda: {0})


def req(seed: int = 0, output_ids: Optional[List[int]] = None, **params) -> FakeReq:
    return FakeReq(SamplingParams(**params), seed=seed, output_ids=list(output_ids or []))


def sample(reqs: List[FakeReq], logits: torch.Tensor) -> torch.Tensor:
    return Sampler().sample(logits, SamplingBatchInfo.from_reqs(reqs, logits.shape[1], "cpu"))


def random_logits(rows: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, V, generator=g) * scale


def chi_square(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> tuple:
    expected = probs * counts.sum()
    used = expected >= min_expected
    stat = float((((counts - expected) ** 2) / expected)[used].sum())
    return stat, int(used.sum()) - 1


# -------------------------------------------------------------------- hash


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0x7FEB352D, 0x846CA68B, 0x9E3779B9, 0xFFFFFFFF, 3]))
def test_mul32_is_exact_modular_multiplication(x: int, c: int) -> None:
    assert int(_mul32(torch.tensor([x]), c)) == (x * c) % 2**32


def test_mix32_is_injective_and_spreads_bits() -> None:
    x = torch.arange(1 << 16, dtype=torch.int64)
    y = mix32(x)
    assert int(y.min()) >= 0 and int(y.max()) < 2**32
    assert torch.unique(y).numel() == x.numel()
    # Consecutive inputs flip about half of the 32 output bits on average.
    flips = torch.tensor([bin(int(v)).count("1") for v in (y[1:2001] ^ y[:2000])], dtype=torch.float32)
    assert 14.0 < float(flips.mean()) < 18.0


def test_uniform_noise_is_uniform_and_in_open_interval() -> None:
    seeds = torch.arange(32, dtype=torch.int64)
    u = uniform_noise(seeds, torch.zeros(32, dtype=torch.int64), torch.arange(4096)[None])
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    counts = torch.histc(u, bins=32, min=0.0, max=1.0)
    stat, dof = chi_square(counts, torch.full((32,), 1 / 32))
    assert stat < dof + 6 * (2 * dof) ** 0.5


def test_unit_interval_never_reaches_one() -> None:
    from sglang.kernels.sampling import unit_interval

    u = unit_interval(torch.tensor([0, 1 << 31, 2**32 - 2, 2**32 - 1], dtype=torch.int64))
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    assert bool(torch.isfinite(-torch.log(u)).all()) and float((-torch.log(u)).min()) > 0.0


def test_masked_tokens_are_never_sampled_at_a_large_vocab() -> None:
    """Regression: with 24 noise bits, ~0.8% of 128k-wide rows drew U == 1.0 for some token, and
    its 0/0 (masked) or p/0 (unmasked) weight won the race whatever its probability."""
    vocab, bs = 128256, 64
    reqs = [req(seed=i, temperature=1.0) for i in range(bs)]
    gen = torch.Generator().manual_seed(0)
    for step in range(8):
        for r in reqs:
            r.output_ids = [0] * step
        info = SamplingBatchInfo.from_reqs(reqs, vocab, "cpu")
        info.allowed_token_mask = torch.zeros(bs, vocab, dtype=torch.bool)
        info.allowed_token_mask[:, [7, 1234]] = True
        logits = torch.randn(bs, vocab, generator=gen) * 3
        ids = Sampler().sample(logits, info)
        assert set(ids.tolist()) <= {7, 1234}, step


def test_noise_depends_on_seed_step_and_all_64_seed_bits() -> None:
    tokens = torch.arange(V)[None]
    base = uniform_noise(torch.tensor([5]), torch.tensor([0]), tokens)
    assert not torch.equal(base, uniform_noise(torch.tensor([6]), torch.tensor([0]), tokens))
    assert not torch.equal(base, uniform_noise(torch.tensor([5]), torch.tensor([1]), tokens))
    assert not torch.equal(base, uniform_noise(torch.tensor([5 + 2**40]), torch.tensor([0]), tokens))
    assert torch.equal(base, uniform_noise(torch.tensor([5]), torch.tensor([0]), tokens))


# -------------------------------------------------------------------- greedy


def test_greedy_rows_equal_argmax_in_mixed_batch() -> None:
    logits = random_logits(6, seed=1)
    reqs = [req(temperature=0.0), req(seed=3), req(top_k=1, temperature=0.5), req(seed=4, top_p=0.5),
            req(temperature=1e-8), req(seed=5, min_p=0.2)]
    ids = sample(reqs, logits)
    argmax = logits.argmax(dim=-1)
    assert ids.dtype == torch.int64 and ids.shape == (6,)
    assert ids[[0, 2, 4]].tolist() == argmax[[0, 2, 4]].tolist()


def test_all_greedy_batch_is_argmax_and_flagged() -> None:
    logits = random_logits(5, seed=2)
    reqs = [req(temperature=0.0) for _ in range(5)]
    info = SamplingBatchInfo.from_reqs(reqs, V, "cpu")
    assert info.is_all_greedy and not info.need_top_k
    assert torch.equal(Sampler().sample(logits, info), logits.argmax(dim=-1))


# -------------------------------------------------------------------- seeds


def run_sequence(target: FakeReq, companions: List[FakeReq], steps: int, target_first: bool) -> List[int]:
    """Sample `steps` tokens for `target` with step-dependent logits, sharing each batch."""
    out = []
    for step in range(steps):
        target.output_ids = list(out)
        batch = [target] + companions if target_first else companions + [target]
        logits = torch.cat([random_logits(len(companions), seed=1000 + step), random_logits(1, seed=step)])
        if target_first:
            logits = torch.cat([logits[-1:], logits[:-1]])
        ids = sample(batch, logits)
        out.append(int(ids[0] if target_first else ids[-1]))
    return out


@pytest.mark.parametrize(
    "params",
    [dict(), dict(temperature=0.8), dict(top_k=10), dict(top_p=0.8), dict(min_p=0.05), dict(top_k=20, top_p=0.9, min_p=0.01)],
)
def test_same_seed_same_tokens_regardless_of_companions(params: dict) -> None:
    alone = run_sequence(req(seed=1234, **params), [], steps=12, target_first=True)
    # Companions that force every code path: full sort (top-p), topk (top-k), greedy, min-p.
    companions = [req(seed=7, top_p=0.5), req(seed=8, top_k=3), req(temperature=0.0), req(seed=9, min_p=0.3)]
    mixed = run_sequence(req(seed=1234, **params), companions, steps=12, target_first=False)
    other = run_sequence(req(seed=1234, **params), companions[1:2], steps=12, target_first=True)
    assert alone == mixed == other


def test_different_seeds_give_different_sequences() -> None:
    sequences = {tuple(run_sequence(req(seed=s), [], steps=10, target_first=True)) for s in range(6)}
    assert len(sequences) == 6


def test_resampling_same_step_is_reproducible() -> None:
    logits = random_logits(1, seed=3)
    first = sample([req(seed=42, output_ids=[5, 6])], logits)
    again = sample([req(seed=42, output_ids=[7, 8])], logits)  # same step (2), other history
    later = [int(sample([req(seed=42, output_ids=[0] * k)], logits)) for k in range(3, 13)]
    assert torch.equal(first, again)
    assert len(set(later)) > 1  # the step enters the noise


# -------------------------------------------------------------------- distributions


def draw_many(n: int, logits_row: torch.Tensor, **params) -> torch.Tensor:
    reqs = [req(seed=s, **params) for s in range(n)]
    ids = sample(reqs, logits_row.expand(n, -1).contiguous())
    return torch.bincount(ids, minlength=logits_row.shape[-1]).float()


def assert_matches(counts: torch.Tensor, probs: torch.Tensor) -> None:
    stat, dof = chi_square(counts, probs)
    assert stat < dof + 6 * (2 * dof) ** 0.5, f"chi-square {stat:.1f} with {dof} degrees of freedom"
    assert float(counts[probs == 0].sum()) == 0.0


def test_distribution_matches_softmax_with_temperature() -> None:
    logits = random_logits(1, seed=4, scale=1.5)[0]
    counts = draw_many(20000, logits, temperature=0.7)
    assert_matches(counts, torch.softmax(logits / 0.7, dim=-1))
    # The check has power: the same draws do not fit the temperature-1 distribution.
    stat, dof = chi_square(counts, torch.softmax(logits, dim=-1))
    assert stat > dof + 6 * (2 * dof) ** 0.5


def kept_probs(logits: torch.Tensor, top_k: int = V, top_p: float = 1.0, min_p: float = 0.0) -> torch.Tensor:
    """Reference filter, written independently: rank by loop, renormalise."""
    probs = torch.softmax(logits, dim=-1)
    order = sorted(range(len(probs)), key=lambda t: -float(probs[t]))
    keep = torch.zeros(len(probs), dtype=torch.bool)
    mass = 0.0
    for rank, t in enumerate(order):
        if rank < top_k and mass < top_p and float(probs[t]) >= min_p * float(probs[order[0]]):
            keep[t] = True
        mass += float(probs[t])
    filtered = probs * keep
    return filtered / filtered.sum()


@pytest.mark.parametrize(
    "params",
    [dict(top_k=5), dict(top_p=0.6), dict(min_p=0.15), dict(top_k=8, top_p=0.6),
     dict(top_k=20, min_p=0.3), dict(top_p=0.95, min_p=0.3)],  # in pairs, min-p removes most
)
def test_filters_never_sample_removed_tokens_and_keep_proportions(params: dict) -> None:
    logits = random_logits(1, seed=5, scale=1.2)[0]
    expected = kept_probs(logits, **params)
    counts = draw_many(12000, logits, **params)
    assert 1 < int((expected > 0).sum()) < V  # the filter bites but leaves a choice
    assert_matches(counts, expected)


def test_tiny_top_p_keeps_exactly_the_most_likely_token() -> None:
    logits = random_logits(1, seed=6)[0]
    counts = draw_many(300, logits, top_p=1e-6)
    assert counts[logits.argmax()] == 300


# -------------------------------------------------------------------- logits processors


def test_raw_logits_are_not_modified() -> None:
    logits = random_logits(2, seed=7)
    before = logits.clone()
    sample([req(seed=1, output_ids=[3, 3], frequency_penalty=1.0, logit_bias={"4": 3.0}, min_new_tokens=5),
            req(seed=2, repetition_penalty=1.5)], logits)
    assert torch.equal(logits, before)


def test_plain_batch_builds_no_processor_state() -> None:
    info = SamplingBatchInfo.from_reqs([req(seed=1), req(temperature=0.0)], V, "cpu")
    assert info.penalties is None and info.logit_bias is None and info.min_tokens_mask is None
    assert not info.has_penalties and not info.has_logit_bias and not info.needs_logits_processing


def test_frequency_and_presence_penalties_count_output_tokens_only() -> None:
    reqs = [req(output_ids=[3, 3, 5], frequency_penalty=0.5, presence_penalty=1.0),
            req(output_ids=[3])]  # no penalty on this row
    reqs[0].origin_input_ids = [7, 7]  # prompt tokens are not penalised by these two
    logits = random_logits(2, seed=8)
    out = apply_logits_processors(logits.clone(), SamplingBatchInfo.from_reqs(reqs, V, "cpu"))
    expected = logits.clone()
    expected[0, 3] -= 0.5 * 2 + 1.0
    expected[0, 5] -= 0.5 * 1 + 1.0
    assert torch.allclose(out, expected)


def test_repetition_penalty_matches_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    prompt, output = [1, 2, 9], [9, 10, 40]
    r = req(output_ids=output, repetition_penalty=1.3)
    r.origin_input_ids = prompt
    logits = random_logits(1, seed=9)
    ours = apply_logits_processors(logits.clone(), SamplingBatchInfo.from_reqs([r], V, "cpu"))
    hf = transformers.RepetitionPenaltyLogitsProcessor(penalty=1.3)(torch.tensor([prompt + output]), logits.clone())
    assert torch.allclose(ours, hf)
    assert not torch.allclose(ours, logits)


def test_logit_bias_accepts_str_and_int_keys_and_forces_tokens() -> None:
    logits = random_logits(2, seed=10)
    ids = sample([req(seed=1, logit_bias={"17": 100.0}), req(seed=2, temperature=0.0, logit_bias={33: 100.0})], logits)
    assert ids.tolist() == [17, 33]
    out = apply_logits_processors(logits.clone(), SamplingBatchInfo.from_reqs([req(logit_bias={"5": -2.5}), req()], V, "cpu"))
    assert float(out[0, 5]) == pytest.approx(float(logits[0, 5]) - 2.5)
    assert torch.equal(out[1], logits[1])


def test_min_new_tokens_masks_eos_until_reached() -> None:
    logits = random_logits(3, seed=11)
    logits[:, 0] = 50.0  # EOS (id 0) would always win
    logits[:, 9] = 50.0  # a stop token id for the first request
    reqs = [req(temperature=0.0, min_new_tokens=3, output_ids=[4, 4]),
            req(temperature=0.0, min_new_tokens=3, output_ids=[4, 4, 4]),  # reached: free to stop
            req(seed=3, min_new_tokens=2)]
    reqs[0].eos_token_ids = {0, 9}
    ids = sample(reqs, logits)
    assert int(ids[0]) not in (0, 9)
    assert int(ids[1]) == 0
    assert int(ids[2]) != 0


def test_allowed_token_mask_restricts_choices() -> None:
    logits = random_logits(2, seed=12)
    info = SamplingBatchInfo.from_reqs([req(seed=1), req(temperature=0.0)], V, "cpu")
    info.allowed_token_mask = torch.zeros(2, V, dtype=torch.bool)
    info.allowed_token_mask[0, [2, 3]] = True
    info.allowed_token_mask[1, 11] = True
    ids = Sampler().sample(logits, info)
    assert int(ids[0]) in (2, 3) and int(ids[1]) == 11


def test_penalties_change_sampling_outcome() -> None:
    logits = torch.zeros(1, V)
    logits[0, 7] = 5.0
    assert int(sample([req(temperature=0.0)], logits)) == 7
    assert int(sample([req(temperature=0.0, output_ids=[7] * 4, frequency_penalty=2.0)], logits)) != 7


# -------------------------------------------------------------------- shapes and edges


def test_shape_mismatch_is_a_clear_error() -> None:
    info = SamplingBatchInfo.from_reqs([req(), req()], V, "cpu")
    with pytest.raises(ValueError, match=r"logits have shape \(3, 64\) but the SamplingBatchInfo expects \(2, 64\)"):
        Sampler().sample(torch.zeros(3, V), info)


def test_in_place_processors_require_float32() -> None:
    info = SamplingBatchInfo.from_reqs([req(logit_bias={"1": 1.0})], V, "cpu")
    with pytest.raises(ValueError, match="expect float32 logits"):
        apply_logits_processors(torch.zeros(1, V, dtype=torch.bfloat16), info)


def test_bfloat16_logits_are_sampled_after_upcast() -> None:
    logits = random_logits(2, seed=13).to(torch.bfloat16)
    bias = torch.zeros(V)
    bias[1] = 0.5
    ids = sample([req(temperature=0.0, logit_bias={"1": 0.5}), req(seed=1)], logits)
    assert ids.dtype == torch.int64
    assert int(ids[0]) == int((logits[0].float() + bias).argmax())


def test_empty_batch() -> None:
    assert sample([], torch.zeros(0, V)).shape == (0,)


def test_batch_info_tensors_and_flags() -> None:
    reqs = [req(seed=-1, top_k=-1, output_ids=[1, 2]), req(seed=2**64 + 3, top_k=500, top_p=0.9), req(temperature=0.0, min_p=0.5)]
    info = SamplingBatchInfo.from_reqs(reqs, V, "cpu")
    assert info.top_ks.tolist() == [V, V, 1]
    assert info.steps.tolist() == [2, 0, 0]
    assert info.seeds.tolist() == [-1, 3, 0]  # low 64 bits, as int64
    assert info.greedy_mask.tolist() == [False, False, True]
    assert info.need_top_p and not info.need_top_k and not info.need_min_p  # greedy rows don't count
    assert info.temperatures.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_match_cpu() -> None:
    logits = random_logits(8, seed=14)
    reqs = [req(seed=s, top_p=0.9 if s % 2 else 1.0, top_k=10 if s % 3 else -1) for s in range(8)]
    tokens = torch.arange(V)[None]
    cpu_noise = uniform_noise(torch.arange(8), torch.zeros(8, dtype=torch.int64), tokens)
    gpu_noise = uniform_noise(torch.arange(8).cuda(), torch.zeros(8, dtype=torch.int64).cuda(), tokens.cuda())
    assert torch.equal(cpu_noise, gpu_noise.cpu())
    cpu_ids = sample(reqs, logits)
    gpu_ids = Sampler().sample(logits.cuda(), SamplingBatchInfo.from_reqs(reqs, V, "cuda"))
    assert torch.equal(cpu_ids, gpu_ids.cpu())


def test_pending_tokens_count_as_if_appended() -> None:
    """Overlap scheduling: a token still on the device (PendingTokens) must act exactly as if it
    were the last of output_ids: sampling step, penalties, min_new_tokens."""
    from sglang.runtime.sampling.penalties import PendingTokens

    def reqs(pending: bool) -> List[FakeReq]:
        tail = [] if pending else [5]
        return [req(seed=3, output_ids=[3, 3] + tail, temperature=0.7, frequency_penalty=0.5,
                    presence_penalty=0.3, repetition_penalty=1.4, min_new_tokens=4),
                req(seed=4, output_ids=[9] + tail, temperature=0.9, min_new_tokens=2),
                req(seed=5, output_ids=[2, 8], temperature=0.0)]  # no pending token in this row

    logits = random_logits(3, seed=21)
    plain = SamplingBatchInfo.from_reqs(reqs(False), V, "cpu")
    pending = SamplingBatchInfo.from_reqs(reqs(True), V, "cpu", PendingTokens([0, 1], torch.tensor([5, 5])))
    assert plain.steps.tolist() == pending.steps.tolist() == [3, 2, 2]
    a = apply_logits_processors(logits.clone(), plain)
    b = apply_logits_processors(logits.clone(), pending)
    assert torch.equal(a, b)
    assert torch.equal(Sampler().sample(logits, plain), Sampler().sample(logits, pending))


def test_grammar_mask_wins_over_min_new_tokens() -> None:
    """A grammar whose text is complete allows only EOS; min_new_tokens forbids it. The row must
    not be left with nothing allowed (that sampled an arbitrary token): EOS is chosen. Rows where
    the two agree on something keep both constraints."""
    logits = random_logits(3, seed=13)
    reqs = [req(seed=1, min_new_tokens=5), req(temperature=0.0, min_new_tokens=5), req(seed=2, min_new_tokens=5)]
    info = SamplingBatchInfo.from_reqs(reqs, V, "cpu")
    info.allowed_token_mask = torch.zeros(3, V, dtype=torch.bool)
    info.allowed_token_mask[0, 0] = True  # only EOS (id 0)
    info.allowed_token_mask[1, 0] = True
    info.allowed_token_mask[2, [0, 21]] = True  # EOS or 21: min_new_tokens removes EOS
    for _ in range(3):
        ids = Sampler().sample(logits, info)
        assert ids.tolist()[:2] == [0, 0] and int(ids[2]) == 21
