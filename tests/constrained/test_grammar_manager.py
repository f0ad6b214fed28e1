"""GrammarManager: off-thread compilation, (kind, spec) cache, failures, metrics; batch masks."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from sglang.runtime.constrained.batch_mask import build_allowed_token_mask
from sglang.runtime.constrained.grammar_manager import GrammarManager, grammar_kind_of
from sglang.runtime.sampling.sampling_params import SamplingParams
from tests.constrained.conftest import MODEL_VOCAB


@pytest.fixture(params=["fsm", "xgrammar"])
def manager(request, tokenizer, eos_ids):
    mgr = GrammarManager(request.param, tokenizer, MODEL_VOCAB, eos_ids)
    yield mgr
    mgr.shutdown(wait=True)


def test_second_submit_is_a_cache_hit_with_its_own_state(manager, tokenizer) -> None:
    first = manager.submit("regex", "[a-c]{3}").result(timeout=30)
    second = manager.submit("regex", "[a-c]{3}").result(timeout=30)
    stats = manager.stats()
    assert stats["compiles"] == 1 and stats["cache_hits"] == 1 and stats["cached_grammars"] == 1
    assert first is not second
    assert first.accept_tokens(tokenizer.encode("abc", add_special_tokens=False)) and first.is_terminated()
    assert not second.is_terminated()  # untouched by the first request's progress


def test_compiles_off_the_calling_thread(manager, monkeypatch) -> None:
    seen = {}
    release = threading.Event()
    real_compile = manager.backend.compile

    def slow_compile(kind, spec):
        seen["thread"] = threading.current_thread().name
        release.wait(timeout=10)
        return real_compile(kind, spec)

    monkeypatch.setattr(manager.backend, "compile", slow_compile)
    start = time.perf_counter()
    future = manager.submit("regex", "x+")
    assert time.perf_counter() - start < 1.0 and not future.done()  # submit did not wait
    release.set()
    assert future.result(timeout=30) is not None
    assert seen["thread"].startswith("grammar-compile") and seen["thread"] != threading.current_thread().name


def test_invalid_spec_fails_only_its_future(manager) -> None:
    bad = manager.submit("json", '{"type": "foo"}')
    with pytest.raises(ValueError, match="invalid JSON schema"):
        bad.result(timeout=30)
    again = manager.submit("json", '{"type": "foo"}')
    assert isinstance(again.exception(timeout=30), ValueError)
    good = manager.submit("json", '{"type": "boolean"}').result(timeout=30)
    assert good is not None
    stats = manager.stats()
    assert stats["failures"] == 1 and stats["cache_hits"] == 1 and stats["compiles"] == 2
    assert sum(stats["compile_time_buckets"].values()) == stats["compiles"]
    assert stats["compile_time_sum_s"] > 0 and stats["backend"] == manager.backend.name


def test_disabled_backend_refuses_every_grammar(tokenizer, eos_ids) -> None:
    manager = GrammarManager("none", tokenizer, MODEL_VOCAB, eos_ids)
    with pytest.raises(ValueError, match="--grammar-backend none"):
        manager.submit("regex", "a").result(timeout=30)
    manager.shutdown()


def test_grammar_kind_of_reads_sampling_params() -> None:
    assert grammar_kind_of(SamplingParams()) is None
    assert grammar_kind_of(SamplingParams(regex="a+")) == ("regex", "a+")
    assert grammar_kind_of(SamplingParams(json_schema='{"type": "null"}')) == ("json", '{"type": "null"}')
    assert grammar_kind_of(SamplingParams(ebnf='root ::= "x"')) == ("ebnf", 'root ::= "x"')


def test_batch_mask_matches_per_row_masks(compiled, tokenizer) -> None:
    assert build_allowed_token_mask([None, None], MODEL_VOCAB) is None
    fsm_grammar = compiled("fsm", "regex", "[0-9]+")
    xgr_grammar = compiled("xgrammar", "regex", "[a-z]+")
    xgr_done = compiled("xgrammar", "regex", "ok")
    assert xgr_done.accept_tokens(tokenizer.encode("ok", add_special_tokens=False)) and xgr_done.is_terminated()
    xgr_eos = compiled("xgrammar", "regex", "ok")
    eos = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert xgr_eos.accept_tokens(tokenizer.encode("ok", add_special_tokens=False) + [eos])
    batch = [None, fsm_grammar, xgr_grammar, xgr_done, xgr_eos]
    mask = build_allowed_token_mask(batch, MODEL_VOCAB)
    assert mask.shape == (5, MODEL_VOCAB) and mask.dtype == torch.bool
    assert mask[0].all()
    for row, grammar in enumerate(batch[1:], start=1):
        expected = torch.zeros(MODEL_VOCAB, dtype=torch.bool)
        grammar.fill_allowed_mask(expected)
        assert torch.equal(mask[row], expected)
    for row in (3, 4):  # complete (only EOS may follow) and after EOS
        assert set(mask[row].nonzero().flatten().tolist()) == set(xgr_done._eos_set)


def test_unpack_bitmask_cpu_and_shift_paths_agree() -> None:
    from sglang.runtime.constrained import batch_mask

    gen = torch.Generator().manual_seed(0)
    packed = torch.randint(-(2**31), 2**31 - 1, (3, 5), dtype=torch.int32, generator=gen)
    fast = batch_mask.unpack_bitmask(packed, 150)
    shifts = ((packed.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1).flatten(-2)[..., :150].bool()
    assert fast.shape == (3, 150) and torch.equal(fast, shifts)
    word, bit = divmod(77, 32)
    assert bool(fast[1, 77]) == bool((int(packed[1, word]) >> bit) & 1)
