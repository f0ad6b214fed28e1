"""Our models vs transformers on tiny random checkpoints (float32, CPU).

One batched extend mixes fresh prompts with requests whose prefix was prefilled by an earlier pass
(so it is read back from the KV pool); then batched decode steps. Prompts are longer than the
sliding windows (8) so windowed layers are really exercised, in prefill and in decode.
"""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from tests.models.harness import (
    KVHarness,
    hf_incremental_logprobs,
    hf_prompt_logprobs,
    hf_reference_model,
    logprobs,
)

TOL = 2e-4

VARIANTS = {
    "llama": ("llama", {}),
    "mistral-sliding": ("mistral", {"sliding_window": 8}),
    "qwen2": ("qwen2", {}),
    "qwen2-sliding": ("qwen2", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1}),
    "qwen3": ("qwen3", {}),
    "gemma2": ("gemma2", {}),
}

PROMPT_LENS = (5, 12, 23, 37)
SPLITS = (None, 4, None, 20)  # where a request's prompt is cut into two extend passes
DECODE_STEPS = 4


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tiny_ckpt):
    arch, overrides = VARIANTS[request.param]
    path = tiny_ckpt(arch, **overrides)
    mc = ModelConfig(path)
    hf = hf_reference_model(path)
    return load_model(mc), hf, mc


def _prompts(vocab: int, seed: int = 1) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]


def _split_rows(out_rows: torch.Tensor, lens: list[int]) -> list[torch.Tensor]:
    return list(torch.split(out_rows, lens))


def test_prefill_with_cached_prefix_and_batched_decode(pair):
    model, hf, mc = pair
    prompts = _prompts(mc.vocab_size)
    h = KVHarness.for_config(model, mc)
    rows = [h.new_request() for _ in prompts]

    # Pass 1: prefixes of the split requests.
    first = [i for i, s in enumerate(SPLITS) if s]
    out1 = h.extend([rows[i] for i in first], [prompts[i][: SPLITS[i]] for i in first], return_logprob=True)
    got = {i: [part] for i, part in zip(first, _split_rows(out1.input_logits, [SPLITS[i] for i in first]))}

    # Pass 2: every request in one batch; split ones continue on top of their cached prefix.
    chunks = [p[s:] if s else p for p, s in zip(prompts, SPLITS)]
    out2 = h.extend(rows, chunks, return_logprob=True)
    for i, part in enumerate(_split_rows(out2.input_logits, [len(c) for c in chunks])):
        got.setdefault(i, []).append(part)
        assert torch.equal(out2.next_token_logits[i], part[-1])

    for i, prompt in enumerate(prompts):
        ours = logprobs(torch.cat(got[i]))
        ref = hf_prompt_logprobs(hf, prompt)
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max().item() < TOL, f"request {i} (len {len(prompt)}) differs from HF"

    gen = torch.Generator().manual_seed(2)
    new_tokens = torch.randint(0, mc.vocab_size, (len(prompts), DECODE_STEPS), generator=gen).tolist()
    steps = [logprobs(h.decode(rows, [toks[t] for toks in new_tokens]).next_token_logits)
             for t in range(DECODE_STEPS)]
    for i, prompt in enumerate(prompts):
        ref = hf_incremental_logprobs(hf, prompt, new_tokens[i])
        ours = torch.stack([s[i] for s in steps])
        assert (ours - ref).abs().max().item() < TOL, f"decode of request {i} differs from HF"


def test_mixed_batch_matches_hf(pair):
    """MIXED mode: decode-like requests (extend by 1 token) ride along with a chunked prefill."""
    model, hf, mc = pair
    prompts = _prompts(mc.vocab_size, seed=3)
    h = KVHarness.for_config(model, mc)
    rows = [h.new_request() for _ in prompts]
    # Requests 0 and 2 are "running": all but their last prompt token are cached.
    h.extend([rows[0], rows[2]], [prompts[0][:-1], prompts[2][:-1]])
    h.extend([rows[3]], [prompts[3][:10]])  # request 3 is mid chunked-prefill
    chunks = [prompts[0][-1:], prompts[1], prompts[2][-1:], prompts[3][10:]]
    out = h.extend(rows, chunks, mode=ForwardMode.MIXED)
    assert out.input_logits is None
    for i, prompt in enumerate(prompts):
        ref = hf_prompt_logprobs(hf, prompt)[-1]
        assert (logprobs(out.next_token_logits[i]) - ref).abs().max().item() < TOL, f"request {i}"


def test_partial_logprob_rows_and_no_full_logits_by_default(pair):
    model, hf, mc = pair
    prompts = _prompts(mc.vocab_size, seed=4)[:3]
    h = KVHarness.for_config(model, mc)
    rows = [h.new_request() for _ in prompts]
    starts = [0, 7, len(prompts[2])]  # all rows, a tail, none
    out = h.extend(rows, prompts, return_logprob=True, logprob_starts=starts)
    assert out.input_logits.shape[0] == sum(len(p) - s for p, s in zip(prompts, starts))
    offset = 0
    for p, s in zip(prompts, starts):
        n = len(p) - s
        if n:
            ref = hf_prompt_logprobs(hf, p)[s:]
            assert (logprobs(out.input_logits[offset : offset + n]) - ref).abs().max().item() < TOL
        offset += n

    h2 = KVHarness.for_config(model, mc)
    out2 = h2.extend([h2.new_request() for _ in prompts], prompts, return_logprob=False)
    assert out2.input_logits is None
    assert out2.next_token_logits.shape == (len(prompts), mc.vocab_size)
    assert out2.next_token_logits.dtype == torch.float32
