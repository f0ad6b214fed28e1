"""Decode CUDA graphs: replayed logits equal eager logits, padded rows touch only KV slot 0, and
the runner falls back to eager where no graph fits. The batch-size ladder is checked on any host."""

from __future__ import annotations

from typing import List

import pytest
import torch

from sglang.bench_one_batch import BatchDriver, make_reqs, random_prompts
from sglang.runtime.managers.schedule_batch import ScheduleBatch
from sglang.runtime.model_executor.cuda_graph_runner import capture_batch_sizes, default_max_bs
from sglang.runtime.model_executor.forward_batch import ForwardMode
from sglang.testing import tiny_model_dir

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MAX_BS = 16
# In order: a later, smaller batch padded inside a graph that an earlier, larger batch filled must
# still send its padded rows to slot 0. 20 > MAX_BS runs eagerly.
STEP_BATCH_SIZES = (13, 3, 8, 1, 16, 20, 5)
# Relative error (norm) between graph and eager logits: both run the same kernels, but a padded
# batch runs GEMMs of another M, which cuBLAS may sum in another order; the model amplifies that
# (H100, 2026-11-22: up to 5.2e-5 in float32). A real fault (wrong row, stale KV) is O(1).
TOL = {"bfloat16": 1e-2, "float32": 2e-4}
# head_dim 64 (256 / 4 heads), a size the Triton attention kernels are tested at.
MODEL_OVERRIDES = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2}


def test_capture_batch_sizes_ladder():
    assert capture_batch_sizes(160) == [1, 2, 4, 8, 12, 16] + list(range(24, 161, 8))
    assert capture_batch_sizes(20) == [1, 2, 4, 8, 12, 16, 20]
    assert capture_batch_sizes(3) == [1, 2, 3]
    assert capture_batch_sizes(1) == [1]
    with pytest.raises(ValueError, match=">= 1"):
        capture_batch_sizes(0)
    assert default_max_bs(80 << 30) == 160 and default_max_bs(141 << 30) == 256


def _runner(dtype: str, arch: str = "llama", **overrides):
    from sglang.runtime.model_executor.model_runner import ModelRunner
    from sglang.runtime.server_args import ServerArgs

    args = dict(device="cuda", dtype=dtype, random_seed=0, max_total_tokens=8192, max_running_requests=32,
                cuda_graph_max_bs=MAX_BS)
    args.update(overrides)
    return ModelRunner(ServerArgs(model_path=tiny_model_dir(arch, **MODEL_OVERRIDES), **args))


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _kv_snapshot(runner) -> List[torch.Tensor]:
    return [runner.kv_pool.k_buffer[0].clone(), runner.kv_pool.v_buffer[-1].clone()]


def _changed_slots(before: List[torch.Tensor], runner) -> set:
    after = [runner.kv_pool.k_buffer[0], runner.kv_pool.v_buffer[-1]]
    changed = set()
    for old, new in zip(before, after):
        diff = (old != new).flatten(1).any(dim=1)
        changed |= set(torch.nonzero(diff).flatten().tolist())
    return changed


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3", "gemma2"])
def test_replay_matches_eager_and_padding_writes_only_slot_zero(dtype, arch):
    runner = _runner(dtype, arch)
    graphs = runner.graph_runner
    assert graphs is not None and graphs.batch_sizes == capture_batch_sizes(MAX_BS)
    driver = BatchDriver(runner)
    lens = [5 + 7 * i for i in range(max(STEP_BATCH_SIZES))]  # different lengths: different seq_lens per row
    reqs = [make_reqs(random_prompts(1, n, runner.vocab_size(), seed=n), 64)[0] for n in lens]
    driver.prefill(reqs)
    for bs in STEP_BATCH_SIZES:
        batch = ScheduleBatch(reqs[:bs], ForwardMode.DECODE, driver.res)
        fb = batch.build_decode()
        before = _kv_snapshot(runner)
        replays = graphs.num_replays
        graph_logits = runner.forward(fb).next_token_logits.clone()
        used_graph = graphs.num_replays == replays + 1
        assert used_graph == (bs <= MAX_BS), f"bs {bs}: graph used={used_graph}"
        written = set(fb.out_cache_loc.tolist())
        stray = _changed_slots(before, runner) - written - {0}
        assert not stray, f"bs {bs}: padded rows wrote KV slots {sorted(stray)[:8]} outside out_cache_loc"
        eager_logits = runner.forward_eager(fb).next_token_logits
        assert graph_logits.shape == (bs, runner.vocab_size())
        assert torch.isfinite(graph_logits).all()
        err = _rel_err(graph_logits, eager_logits)
        assert err < TOL[dtype], f"bs {bs} ({dtype}): graph vs eager relative error {err:.2e}"
        batch.commit_decode()
        driver.sample(reqs[:bs], eager_logits)
    driver.release(reqs)
    assert runner.allocator.available_size() == runner.max_total_num_tokens


@pytest.mark.gpu
@requires_cuda
def test_disable_cuda_graph_runs_eagerly():
    runner = _runner("bfloat16", disable_cuda_graph=True)
    assert runner.graph_runner is None and runner.padding_req_row is None
    driver = BatchDriver(runner)
    reqs = make_reqs(random_prompts(2, 9, runner.vocab_size(), seed=3), 4)
    driver.prefill(reqs)
    assert all(len(driver.decode(reqs)) == 2 for _ in range(3))
    assert [len(r.output_ids) for r in reqs] == [4, 4]


@pytest.mark.gpu
@requires_cuda
def test_padding_row_is_reserved_and_zero():
    runner = _runner("bfloat16")
    row = runner.padding_req_row
    assert row is not None
    table = runner.req_to_token_pool
    taken = table.alloc(table.available_size())
    assert row not in taken, "the padding row must never be handed to a request"
    assert int(table.req_to_token[row].abs().sum()) == 0
    table.free(taken)

