"""Logits under an adapter equal transformers + peft's merged model (float32), per architecture;
a batch mixing four adapters and the base model equals each request run alone."""

from __future__ import annotations

import pytest
import torch

from sglang.testing.scheduler_harness import SchedulerHarness
from sglang.testing.tiny_lora import peft_merged_model, reference_logprobs
from tests.lora.conftest import ARCHS

PROMPTS = [[1, 5, 9, 22, 7, 3, 44, 12], [2, 8, 100, 33, 4], [7, 7, 7, 61, 90, 15, 3], [11, 200, 3]]


def _harness(base, adapters, **kw):
    kw.setdefault("max_loras_per_batch", 4)
    return SchedulerHarness(base, dtype="float32", lora_paths=[f"{n}={p}" for n, p in adapters.items()], **kw)


def _full_logprobs(h: SchedulerHarness, rid: str) -> torch.Tensor:
    """[positions 1..n-1 and the first output position, vocab] logprobs recorded for `rid`."""
    rows = []
    for delta in h.results[rid].logprobs:
        for entry in (delta.input_token_ids_logprobs or []) + list(delta.output_token_ids_logprobs):
            if entry is None:
                continue
            row = torch.empty(len(entry))
            for lp, tok in entry:
                row[tok] = lp
            rows.append(row)
    return torch.stack(rows)


def _submit(h, rid, ids, lora, vocab, new_tokens=1):
    h.submit(rid, input_ids=ids, params={"max_new_tokens": new_tokens, "temperature": 0.0}, return_logprob=True, logprob_start_len=0,
             token_ids_logprob=list(range(vocab)), lora_path=lora)


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_peft_merged_model(lora_dirs, arch):
    base, adapters = lora_dirs[arch]
    h = _harness(base, adapters)
    vocab = h.runner.vocab_size()
    names = [None, *adapters]
    for name in names:
        _submit(h, f"r-{name}", PROMPTS[0], name, vocab)
    h.run_until_idle()
    base_lp = None
    for name in names:
        got = _full_logprobs(h, f"r-{name}")
        if name is None:
            from sglang.testing.hf_reference import hf_model
            want = reference_logprobs(hf_model(base), PROMPTS[0])
            base_lp = got
        else:
            want = reference_logprobs(peft_merged_model(base, adapters[name]), PROMPTS[0])
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4, msg=f"{arch} adapter {name}")
        if name is not None:  # the adapter must change something, or the comparison proves nothing
            assert (got - base_lp).abs().max() > 1e-2


@pytest.mark.parametrize("arch", ARCHS)
def test_mixed_batch_equals_each_alone(lora_dirs, arch):
    base, adapters = lora_dirs[arch]
    names = [None, *adapters]
    together = _harness(base, adapters)
    vocab = together.runner.vocab_size()
    for i, name in enumerate(names):
        _submit(together, f"r{i}", PROMPTS[i % len(PROMPTS)], name, vocab, new_tokens=4)
    together.run_until_idle()
    # the prefill batch and the decode batches mixed all five
    assert [len(r.extend_seq_lens) for r in together.forwards if r.mode.is_extend()] == [len(names)]
    assert max(r.num_tokens for r in together.forwards if r.mode.is_decode()) == len(names)
    for i, name in enumerate(names):
        alone = _harness(base, adapters, runner=together.runner)
        _submit(alone, "x", PROMPTS[i % len(PROMPTS)], name, vocab, new_tokens=4)
        alone.run_until_idle()
        assert alone.results["x"].output_ids == together.results[f"r{i}"].output_ids
        torch.testing.assert_close(_full_logprobs(alone, "x"), _full_logprobs(together, f"r{i}"), rtol=0, atol=1e-4)
