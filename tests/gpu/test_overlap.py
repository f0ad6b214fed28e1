"""Overlap scheduling on CUDA: same tokens as the synchronous loop (CUDA graphs on), and no
device synchronisation inside the scheduler loop apart from the per-batch event wait.

PyTorch's sync debug mode flags every implicit synchronisation (blocking copies, `.item()`,
`.tolist()` of device tensors, ...) but not `Event.synchronize`, which is the one wait the loop
is allowed: reading batch N's results while batch N+1 runs.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from typing import List

import pytest
import torch

from sglang.testing import tiny_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness
from tests.engine.test_overlap_schedule import SCHEMA, _compare, _grammar_waves, _run, _waves

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# An explicit pool: sized from free memory, the first harness of the process would take it all.
GPU_ARGS = dict(device="cuda", dtype="float32", cuda_graph_max_bs=16, max_total_tokens=4096)

# FlashInfer runs float16/bfloat16 models only, and not the tiny llama's head_dim of 16: its cases
# use a bf16 tiny llama of head_dim 64 (same tokenizer, so the same prompts).
NO_FLASHINFER = pytest.mark.skipif(importlib.util.find_spec("flashinfer") is None, reason="flashinfer is not installed")
FLASHINFER_ARGS = dict(attention_backend="flashinfer", dtype="bfloat16")
FLASHINFER_DIMS = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2}


def _model_path(llama_path: str, args: dict) -> str:
    return tiny_model_dir("llama", **FLASHINFER_DIMS) if args.get("attention_backend") == "flashinfer" else llama_path


def _check_backend(h: SchedulerHarness, args: dict) -> None:
    want = {"flashinfer": "FlashInferAttnBackend"}.get(args.get("attention_backend"), "TritonAttnBackend")
    assert type(h.runner.attn_backend).__name__ == want


def _uniform(llama_prompts: List[List[int]]) -> list:
    """Same-length llama_prompts, same output length, all at once: both modes run the same batches
    (one prefill, then the same decode compositions), so the numerics match bit for bit."""
    ids = [(p * 8)[:24] for p in llama_prompts]
    specs = []
    for i, p in enumerate(ids):
        params = {"max_new_tokens": 16, "ignore_eos": True, "temperature": 0 if i % 3 == 0 else 0.9, "seed": i}
        if i % 2:
            params.update(frequency_penalty=1.0, presence_penalty=0.5, repetition_penalty=1.3, min_new_tokens=5)
        if i % 4 == 1:
            params["logit_bias"] = {"300": 8.0}
        specs.append((f"u{i}", p, params, {"return_logprob": True, "top_logprobs_num": 2}))
    return [specs]


def _check_identical_batches(path: str, llama_prompts: List[List[int]], args: dict) -> None:
    ref, _ = _run(path, llama_prompts, aborts=False, waves_fn=_uniform, disable_overlap_schedule=True, **args)
    got, h = _run(path, llama_prompts, aborts=False, waves_fn=_uniform, **args)
    _check_backend(h, args)
    _compare(ref, got)
    assert h.scheduler.stats["decode_steps"] == 15 and h.runner.graph_runner.num_replays > 0


def test_overlap_same_tokens_as_sync_for_identical_batches(llama_path, llama_prompts):
    _check_identical_batches(llama_path, llama_prompts, GPU_ARGS)


@NO_FLASHINFER
def test_overlap_same_tokens_as_sync_for_identical_batches_flashinfer(llama_path, llama_prompts):
    """Same, with FlashInfer planning each batch on the host while the previous one runs: a plan
    (its pinned-buffer copy) overwritten before the batch it was made for ran changes tokens."""
    args = {**GPU_ARGS, **FLASHINFER_ARGS}
    _check_identical_batches(_model_path(llama_path, args), llama_prompts, args)


def _greedy_waves(llama_prompts: List[List[int]]) -> list:
    """The mixed workload, greedy and without logits processors (so a divergence can be checked
    against the raw top-2 gap), every request returning top-2 logprobs."""
    out = []
    for wave in _waves(llama_prompts):
        specs = []
        for rid, ids, params, kw in wave:
            if any(k in params for k in ("regex", "frequency_penalty", "repetition_penalty", "min_new_tokens")):
                continue
            params = {**params, "temperature": 0}
            specs.append((rid, ids, params, {**kw, "return_logprob": True, "top_logprobs_num": 2}))
        out.append(specs)
    return out


# Batch composition changes GEMM shapes, hence the last bits of logits: top-2 gaps under which a
# greedy choice may flip, per model dtype (bf16 hidden states carry about 3 significant digits).
# H200, 2026-12: no divergence at all in bf16 (flashinfer and triton, all three configurations).
TIE_GAP = {"float32": 1e-3, "bfloat16": 5e-2}


def _divergences(ref, got, aborted) -> list:
    """Requests whose tokens differ, as (rid, step, reference top-2 gap there)."""
    bad = []
    for rid, r in ref.items():
        a, b = r.output_ids, got[rid].output_ids
        if rid in aborted:
            a = a[: len(b)]
        if a == b:
            continue
        step = next((t for t in range(min(len(a), len(b))) if a[t] != b[t]), min(len(a), len(b)))
        top = [e for d in r.logprobs for e in (d.output_top_logprobs or [])]
        gap = top[step][0][0] - top[step][1][0] if step < len(top) and len(top[step]) > 1 else float("inf")
        bad.append((rid, step, gap, a[step : step + 3], b[step : step + 3]))
    return bad


@pytest.mark.parametrize("overrides", [
    {}, {"max_total_tokens": 150, "max_running_requests": 6}, {"chunked_prefill_size": 7},
    pytest.param(FLASHINFER_ARGS, marks=NO_FLASHINFER),
    pytest.param({**FLASHINFER_ARGS, "max_total_tokens": 150, "max_running_requests": 6}, marks=NO_FLASHINFER),
    pytest.param({**FLASHINFER_ARGS, "chunked_prefill_size": 7}, marks=NO_FLASHINFER),
], ids=["default", "tiny-pool", "chunked", "flashinfer", "flashinfer-tiny-pool", "flashinfer-chunked"])
def test_overlap_same_tokens_as_sync_on_mixed_workload(llama_path, llama_prompts, overrides):
    args = {**GPU_ARGS, **overrides}
    path = _model_path(llama_path, args)
    ref, _ = _run(path, llama_prompts, aborts=False, waves_fn=_greedy_waves, disable_overlap_schedule=True, **args)
    got, h = _run(path, llama_prompts, aborts=True, waves_fn=_greedy_waves, **args)
    _check_backend(h, args)
    aborted = {"abort-running", "abort-waiting"}
    for rid in aborted:
        assert got[rid].finished_reason["type"] == "abort"
    bad = _divergences(ref, got, aborted)
    tie_gap = TIE_GAP[args["dtype"]]
    assert all(gap < tie_gap for _, _, gap, _, _ in bad), f"(rid, step, top-2 gap, ref, got): {bad}"
    assert len(bad) <= 2, f"too many near-tie divergences: {bad}"
    assert h.runner.graph_runner is not None and h.runner.graph_runner.num_replays > 0


def _submit_wave(h: SchedulerHarness, tag: str, llama_prompts: List[List[int]], grammar: bool = False) -> None:
    for i, ids in enumerate(llama_prompts):
        params = {"max_new_tokens": 6 + 3 * (i % 5), "temperature": 0 if i % 2 else 0.8, "seed": i}
        if i % 3 == 0:
            params.update(frequency_penalty=0.5, repetition_penalty=1.2, min_new_tokens=2)
        if grammar and i % 2 == 0:
            params.update(json_schema=json.dumps(SCHEMA), max_new_tokens=30)
        kw = {"return_logprob": True, "top_logprobs_num": 2} if i % 4 == 0 else {}
        h.submit(f"{tag}-{i}", input_ids=ids, params=params, **kw)


@pytest.mark.parametrize("grammar", [False, True], ids=["plain", "with-grammars"])
def test_scheduler_loop_has_no_hidden_device_sync(llama_path, llama_prompts, grammar):
    """Prefill, decode, finishing (radix inserts), penalties, output logprobs, arrivals while
    decoding, retraction and (second case) JSON-schema requests with jump-forward: the second
    pass (after warm-up) must not synchronise implicitly."""
    h = SchedulerHarness(llama_path, **{**GPU_ARGS, "max_total_tokens": 400, "max_running_requests": 12})
    _submit_wave(h, "warm", llama_prompts, grammar)
    h.run_until_idle()
    torch.cuda.synchronize()
    flagged = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _submit_wave(h, "a", llama_prompts, grammar)
            for step in range(400):
                if step == 3:
                    _submit_wave(h, "b", llama_prompts, grammar)  # arrivals while a batch is in flight
                if not h.scheduler.has_work():
                    break
                h.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        flagged = [f"{w.filename}:{w.lineno}" for w in caught if "called a synchronizing" in str(w.message)]
    assert not h.scheduler.has_work()
    assert not flagged, f"implicit device syncs in the scheduler loop at: {sorted(set(flagged))}"
    assert all(r.finished_reason is not None for r in h.results.values())
    assert all(r.finished_reason["type"] != "abort" for r in h.results.values())


@pytest.mark.parametrize("overrides", [{}, {"max_running_requests": 1}], ids=["batched", "alone-jumps"])
def test_grammar_workload_on_cuda_follows_its_grammars(llama_path, llama_prompts, overrides):
    """Constrained batches sampled after the previous batch's tokens are accepted, with the mask
    built on the host and unpacked on the device: every sampled token is one the grammar allows
    (a rejection would finish the request with an abort) and finished JSON parses."""
    got, h = _run(llama_path, llama_prompts, aborts=False, waves_fn=_grammar_waves, **{**GPU_ARGS, **overrides})
    assert all(r.finished_reason["type"] != "abort" for r in got.values()), {k: r.finished_reason for k, r in got.items()}
    tok = h.scheduler.output.tokenizer
    for rid, r in got.items():
        if rid.startswith("json") and r.finished_reason["type"] == "stop":
            json.loads(tok.decode(r.output_ids, skip_special_tokens=True))
    if overrides:  # alone, every forced string is jumped (batched, most are decoded instead)
        assert h.scheduler.grammar.stats["jump_forward_events"] > 0
    assert h.runner.graph_runner.num_replays > 0


def test_batch_mask_on_cuda_equals_host_rows(llama_path):
    """build_allowed_token_mask to a CUDA device (packed on the host, unpacked on the device)
    equals each grammar's own host row, for xgrammar (batch filler) and fsm rows in one batch."""
    import random

    from sglang.runtime.constrained.batch_mask import build_allowed_token_mask
    from sglang.runtime.constrained.registry import create_backend
    from sglang.runtime.utils import get_tokenizer

    tok = get_tokenizer(llama_path)
    vocab = len(tok) + 37  # padded embedding: ids past the tokenizer are never allowed
    rng = random.Random(0)
    grammars = []
    for name in ("xgrammar", "fsm"):
        backend = create_backend(name, tok, vocab, eos_token_ids={tok.eos_token_id})
        base = backend.compile("json", json.dumps(SCHEMA))
        for i in range(6):
            g = base.copy()
            row = torch.zeros(vocab, dtype=torch.bool)
            for _ in range(i * 2):
                g.fill_allowed_mask(row)
                choices = row.nonzero().flatten().tolist()
                if g.is_terminated() or not choices:
                    break
                g.accept_token(rng.choice(choices))
            grammars.append(g)
    grammars.insert(3, None)
    mask = build_allowed_token_mask(grammars, vocab, "cuda")
    assert mask.is_cuda and mask.shape == (len(grammars), vocab)
    for i, g in enumerate(grammars):
        expected = torch.ones(vocab, dtype=torch.bool)
        if g is not None:
            g.fill_allowed_mask(expected)
        assert torch.equal(mask[i].cpu(), expected), i
