"""The segmented LoRA Triton kernels on a GPU against their torch twins (float32 and bfloat16,
decode- and prefill-shaped batches, Llama-3-8B projection sizes), and a tiny model serving
adapters on CUDA: logits equal transformers + peft's merged model, and a mixed batch equals each
request alone."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _case(counts, slots, k, n, m, dtype, seed=0):
    from sglang.runtime.lora.layers import plan_segments

    gen = torch.Generator(device="cuda").manual_seed(seed)
    seg, rows, max_len = plan_segments(slots, counts)
    seg, rows = seg.cuda(), rows.cuda()
    t = sum(counts)
    x = torch.randn(t, k, device="cuda", generator=gen).to(dtype)
    a = (torch.randn(max(slots) + 1, n, k, device="cuda", generator=gen) * k ** -0.5).to(dtype)
    b = (torch.randn(max(slots) + 1, m, n, device="cuda", generator=gen) * n ** -0.5).to(dtype)
    out = torch.randn(t, m, device="cuda", generator=gen).to(dtype)
    return x, a, b, out, seg, rows, max_len


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("counts,slots", [([1] * 32, [i % 9 for i in range(32)]), ([1], [3]),
                                          ([300, 7, 1, 129], [1, 0, 2, 1]), ([2048], [5])])
@pytest.mark.parametrize("k,n,m", [(4096, 48, 6144), (4096, 32, 28672), (14336, 16, 4096), (100, 24, 70)])
def test_kernels_match_twins(dtype, counts, slots, k, n, m):
    from sglang.kernels.lora_expand import lora_expand
    from sglang.kernels.lora_shrink import lora_shrink
    from sglang.kernels.ref import lora as ref

    x, a, b, out, seg, rows, max_len = _case(counts, slots, k, n, m, dtype)
    h = lora_shrink(x, a, seg, rows, max_len)
    h_ref = ref.lora_shrink(x.float(), a.float(), seg, rows, max_len)
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == torch.float32 else dict(rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(h.sum(0), h_ref.sum(0), **tol)  # h: partials over slices of K
    got = lora_expand(h, b, out.clone(), seg, rows, max_len)
    want = ref.lora_expand(h.float(), b.float(), out.float(), seg, rows, max_len)
    torch.testing.assert_close(got.float(), want, **tol)


def _logprob_rows(result):
    rows = []
    for delta in result.logprobs:
        for entry in (delta.input_token_ids_logprobs or []) + list(delta.output_token_ids_logprobs):
            if entry is not None:
                row = torch.empty(len(entry))
                for lp, tok in entry:
                    row[tok] = lp
                rows.append(row)
    return torch.stack(rows)


def test_tiny_model_on_cuda_matches_peft(tmp_path):
    pytest.importorskip("peft")
    from sglang.testing.fixtures import tiny_model_dir
    from sglang.testing.scheduler_harness import SchedulerHarness
    from sglang.testing.tiny_lora import peft_merged_model, reference_logprobs, write_peft_adapter

    base = tiny_model_dir("llama")
    adapters = {f"a{i}": write_peft_adapter(base, str(tmp_path / f"a{i}"), r=4 * i, seed=i) for i in (1, 2, 3)}
    h = SchedulerHarness(base, device="cuda", dtype="float32", lora_paths=[f"{n}={p}" for n, p in adapters.items()],
                         disable_cuda_graph=True, max_total_tokens=4096)
    ids = [1, 5, 9, 22, 7, 3, 44, 12]
    vocab = h.runner.vocab_size()
    for name in [None, *adapters]:
        h.submit(f"r-{name}", input_ids=ids, params={"max_new_tokens": 1, "temperature": 0.0}, return_logprob=True,
                 logprob_start_len=0, token_ids_logprob=list(range(vocab)), lora_path=name)
    h.run_until_idle()
    for name, path in adapters.items():
        want = reference_logprobs(peft_merged_model(base, path), ids)
        torch.testing.assert_close(_logprob_rows(h.results[f"r-{name}"]), want, rtol=0, atol=2e-4)


def test_cuda_graph_decode_with_mixed_adapters_equals_eager(tmp_path):
    """Decode steps replayed from CUDA graphs (static per-slot segments refilled at replay) give
    the tokens and logprobs of eager decode, for a batch mixing adapters and the base model."""
    pytest.importorskip("peft")
    from sglang.testing.fixtures import tiny_model_dir
    from sglang.testing.scheduler_harness import SchedulerHarness
    from sglang.testing.tiny_lora import write_peft_adapter

    base = tiny_model_dir("llama")
    paths = [f"a{i}=" + write_peft_adapter(base, str(tmp_path / f"a{i}"), r=4, seed=i) for i in range(1, 4)]
    names = [None, "a1", "a2", "a3", "a1", None, "a3"]
    results = {}
    for graphs in (False, True):
        h = SchedulerHarness(base, device="cuda", dtype="float32", lora_paths=paths, disable_cuda_graph=not graphs,
                             max_loras_per_batch=3, max_total_tokens=4096)  # other tests' cached blocks count as used
        assert (h.runner.graph_runner is not None) == graphs
        for i, name in enumerate(names):
            h.submit(f"r{i}", input_ids=[3 + i, 17, 29, 5 + 2 * i], return_logprob=True, lora_path=name,
                     params={"max_new_tokens": 12, "temperature": 0.0, "ignore_eos": True})
        h.run_until_idle()
        # then a batch on the base model alone: replayed from the graphs without LoRA kernels
        for i in range(len(names), len(names) + 3):
            h.submit(f"r{i}", input_ids=[3 + i, 17, 29, 5 + 2 * i], return_logprob=True,
                     params={"max_new_tokens": 12, "temperature": 0.0, "ignore_eos": True})
        h.run_until_idle()
        if graphs:
            assert h.runner.graph_runner.num_replays > 0 and h.runner.graph_runner.base_graphs
        results[graphs] = h.results
    for i in range(len(names) + 3):
        eager, graph = results[False][f"r{i}"], results[True][f"r{i}"]
        assert graph.output_ids == eager.output_ids
        lp = lambda r: torch.tensor([v for d in r.logprobs for v in d.output_token_logprobs])  # noqa: E731
        torch.testing.assert_close(lp(graph), lp(eager), rtol=0, atol=1e-4)
