"""Tensor parallelism's mirroring, in one process: rank 0's Scheduler records its steps
(TPLeader) and a follower replays them on its own ModelRunner (TPFollower), as the follower
processes do after a broadcast. With every layer replicated (no sharding involved), a faithful
mirror leaves the follower's KV pool and req_to_token table bit-identical to rank 0's and makes
it sample the same tokens, through the overlap workload: seeded sampling, penalties, logprobs,
a regex with jump-forward, aborts, chunked prefill, retraction, with and without the radix
cache, overlap on and off. A follower that missed a table write, a KV copy or a sampling input
would diverge here.
"""

from __future__ import annotations

import pytest
import torch

from sglang.runtime.managers.tp_mirror import TPFollower, TPLeader
from sglang.runtime.model_executor.model_runner import ModelRunner
from tests.engine.test_overlap_schedule import CONFIGS, _waves
from sglang.testing.scheduler_harness import SchedulerHarness


def _mirrored(llama_path, **overrides):
    h = SchedulerHarness(llama_path, **overrides)
    follower = TPFollower(ModelRunner(h.server_args))
    sent = []

    def send(ops):
        sent.append([op[0] for op in ops])
        follower.apply(ops)

    h.scheduler.mirror = TPLeader(h.runner, send)
    leader_ids, follower_ids = [], []
    sample = h.runner.sample

    def leader_sample(logits, info):
        ids = sample(logits, info)
        leader_ids.append(ids.tolist())
        follower_ids.append(follower.last_ids.tolist())  # the follower sampled first
        return ids

    h.runner.sample = leader_sample
    return h, follower, leader_ids, follower_ids, sent


def _drive(h, waves) -> None:
    step = 0
    while waves or h.scheduler.has_work() or h.scheduler.outbox:
        if waves and step % 3 == 0:
            for rid, ids, params, kw in waves.pop(0):
                h.submit(rid, input_ids=ids, params=params, **kw)
        if step == 4:
            h.abort("abort-running")
        h.step()
        step += 1
        assert step < 5000


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("overlap", [True, False], ids=["overlap", "sync"])
def test_follower_mirrors_rank0(llama_path, llama_prompts, overrides, overlap):
    h, follower, leader_ids, follower_ids, sent = _mirrored(
        llama_path, disable_overlap_schedule=not overlap, **overrides)
    _drive(h, _waves(llama_prompts))
    assert h.scheduler.check_memory_idle() is None
    assert follower.num_forwards == h.scheduler.stats["forward_steps"] > 0
    assert leader_ids == follower_ids and len(leader_ids) > 10
    leader, mirror = h.runner, follower.runner
    assert torch.equal(leader.req_to_token_pool.req_to_token, mirror.req_to_token_pool.req_to_token)
    for layer in range(leader.kv_pool.num_layers):
        assert torch.equal(leader.kv_pool.k_buffer[layer], mirror.kv_pool.k_buffer[layer])
        assert torch.equal(leader.kv_pool.v_buffer[layer], mirror.kv_pool.v_buffer[layer])
    assert any("table" in kinds for kinds in sent)
    if overrides.get("max_total_tokens"):
        assert h.scheduler.stats["num_retractions"] > 0


def test_concat_and_append_copies_reach_the_follower(llama_path, llama_prompts):
    from sglang.runtime.managers.io_struct import ConcatAppendReq

    h, follower, *_ , sent = _mirrored(llama_path)
    parent = llama_prompts[0][:12]
    children = [parent + llama_prompts[1][:8], parent + llama_prompts[2][:6]]
    for rid, ids in (("parent", parent), ("child0", children[0]), ("child1", children[1])):
        h.submit(rid, input_ids=ids, params={"max_new_tokens": 1, "temperature": 0})
    h.run_until_idle()
    reply = h.scheduler.handle(ConcatAppendReq(parent_ids=parent, children_ids=children))
    assert reply.success, reply
    h.submit("after", input_ids=children[0] + llama_prompts[2][:6] + [5], params={"max_new_tokens": 4, "temperature": 0})
    h.run_until_idle()
    assert any("copy" in kinds for kinds in sent)  # shipped with the next forward pass
    for layer in range(h.runner.kv_pool.num_layers):
        assert torch.equal(h.runner.kv_pool.k_buffer[layer], follower.runner.kv_pool.k_buffer[layer])
