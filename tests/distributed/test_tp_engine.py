"""Tensor parallelism end to end: Engine(tp_size=2) on the CPU (gloo), one scheduler process per
rank, rank 0 scheduling and the follower mirroring it (docs/architecture.md, Tensor
parallelism). Greedy tokens and prompt log-probs must equal tp_size=1 with the radix cache,
chunked prefill, a small KV pool and a regex-constrained request in one workload;
a follower killed mid-service must fail the next call within seconds, not hang it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import sglang
from sglang.testing.fixtures import tiny_model_dir

PROMPTS = [
    "The capital of France is a city that",
    "Once upon a time, in a land far away, there lived",
    "The capital of France is a city that many people",  # shares a prefix with the first (radix)
    "Numbers: one two three four five six seven eight nine ten eleven twelve",
]
GREEDY = {"max_new_tokens": 48, "temperature": 0, "ignore_eos": True}
REGEX = {"max_new_tokens": 24, "temperature": 0, "regex": r"(yes|no), [a-z]+ [0-9]{2}\."}
ENGINE_ARGS = {"device": "cpu", "chunked_prefill_size": 8, "max_total_tokens": 80, "max_running_requests": 4,
               "schedule_conservativeness": 0.05}


def _workload(tp_size: int) -> dict:
    with sglang.Engine(model_path=tiny_model_dir("llama"), tp_size=tp_size, **ENGINE_ARGS) as engine:
        outs = engine.generate(PROMPTS, GREEDY, return_logprob=True, logprob_start_len=0)
        regex = engine.generate(PROMPTS[1], REGEX)
        again = engine.generate(PROMPTS[0], GREEDY)  # its prompt is cached now
        info = engine.get_server_info()
    return {"outs": outs, "regex": regex, "again": again, "info": info}


@pytest.fixture(scope="module")
def runs() -> dict:
    return {tp: _workload(tp) for tp in (1, 2)}


def test_tp2_equals_tp1(runs):
    ref, got = runs[1], runs[2]
    for a, b in zip(ref["outs"], got["outs"]):
        assert b["output_ids"] == a["output_ids"]
        lp_a = [t[0] for t in a["meta_info"]["input_token_logprobs"][1:]]
        lp_b = [t[0] for t in b["meta_info"]["input_token_logprobs"][1:]]
        assert len(lp_a) == len(lp_b) > 0
        assert max(abs(x - y) for x, y in zip(lp_a, lp_b)) <= 1e-5
    assert got["regex"]["text"] == ref["regex"]["text"]
    assert got["again"]["output_ids"] == ref["again"]["output_ids"]
    assert got["again"]["meta_info"]["cached_tokens"] > 0


def test_tp2_keeps_the_pool_capacity(runs):
    # Every rank's pool has the agreed capacity; retraction under a small pool is covered
    # step by step by test_tp_mirror.py (this workload queues rather than retracts).
    assert runs[2]["info"]["max_total_num_tokens"] == runs[1]["info"]["max_total_num_tokens"] == 80


def test_killing_a_follower_fails_the_engine_quickly():
    engine = sglang.Engine(model_path=tiny_model_dir("llama"), tp_size=2, device="cpu")
    try:
        assert engine.generate("Hello", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2
        follower = dict(engine._procs)["scheduler TP1"]
        os.kill(follower.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="scheduler"):
            engine.generate("Hello there", {"max_new_tokens": 8})
        assert time.monotonic() - start < 5
    finally:
        engine.shutdown()
    assert all(not proc.is_alive() for _, proc in engine._procs)
