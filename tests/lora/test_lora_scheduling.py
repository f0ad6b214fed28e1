"""Scheduler-level LoRA behaviour: the radix cache never shares KV across adapters, at most
--max-loras-per-batch adapters run together (the rest wait and all finish), and unloading an
adapter is refused while a running or waiting request uses it."""

from __future__ import annotations

from sglang.runtime.managers.io_struct import LoadLoraReq, UnloadLoraReq
from sglang.testing.scheduler_harness import SchedulerHarness

PROMPT = list(range(3, 3 + 40))
GREEDY = {"max_new_tokens": 3, "temperature": 0.0}


def _harness(lora_dirs, arch="llama", **kw):
    base, adapters = lora_dirs[arch]
    return SchedulerHarness(base, dtype="float32", lora_paths=[f"{n}={p}" for n, p in adapters.items()], **kw)


def test_radix_keys_prefixes_by_adapter(lora_dirs):
    h = _harness(lora_dirs)
    for i, name in enumerate([None, "a1", "a2", "a1", None]):
        h.submit(f"r{i}", input_ids=PROMPT, params=GREEDY, lora_path=name)
        h.run_until_idle()
    cached = [h.results[f"r{i}"].cached_tokens for i in range(5)]
    # first use of each namespace computes everything; repeats reuse their own namespace only
    assert cached[:3] == [0, 0, 0]
    assert cached[3] > 0 and cached[4] > 0
    # the same text under a1 gives the same tokens the second time (its own KV, not the base's)
    assert h.results["r3"].output_ids == h.results["r1"].output_ids
    assert h.results["r4"].output_ids == h.results["r0"].output_ids
    assert h.scheduler.check_memory_idle() is None


def test_at_most_max_loras_per_batch_and_all_finish(lora_dirs):
    h = _harness(lora_dirs, max_loras_per_batch=2)
    names = [None, "a1", "a2", "a3", "a4"] * 6
    batches = []
    inner = h.runner.lora.prepare

    def spy(lora_names, counts):
        batches.append({n for n in (lora_names or []) if n is not None})
        return inner(lora_names, counts)

    h.runner.lora.prepare = spy
    for i, name in enumerate(names):
        h.submit(f"r{i}", input_ids=[5 + i % 7, 9, 11 + i], params=GREEDY, lora_path=name)
    h.run_until_idle()
    assert all(len(h.results[f"r{i}"].output_ids) == 3 for i in range(len(names)))
    assert max(len(b) for b in batches) == 2  # the limit was reached, never passed
    assert h.runner.lora.pool.loads > 2  # adapters were evicted and reloaded from host memory
    assert h.scheduler.check_memory_idle() is None


def test_unload_refused_while_in_use(lora_dirs):
    h = _harness(lora_dirs)
    h.submit("r", input_ids=PROMPT, params={"max_new_tokens": 5, "temperature": 0.0}, lora_path="a1")
    reply = h.scheduler.handle(UnloadLoraReq("a1"))  # waiting
    assert not reply.success and "in use" in reply.message
    h.step()
    reply = h.scheduler.handle(UnloadLoraReq("a1"))  # running
    assert not reply.success and "in use" in reply.message and "a1" in reply.loaded
    h.run_until_idle()
    assert len(h.results["r"].output_ids) == 5
    reply = h.scheduler.handle(UnloadLoraReq("a1"))
    assert reply.success and "a1" not in reply.loaded
    # a request naming it now is refused with a message listing what is loaded
    h.submit("late", input_ids=PROMPT, params=GREEDY, lora_path="a1")
    h.run_until_idle()
    reason = h.results["late"].finished_reason
    assert reason["type"] == "abort" and "'a1' is not loaded" in reason["message"] and "a2" in reason["message"]
    # and it can come back at run time
    _, adapters = lora_dirs["llama"]
    assert h.scheduler.handle(LoadLoraReq("a1", adapters["a1"])).success
    assert not h.scheduler.handle(LoadLoraReq("a1", adapters["a1"])).success  # the name is taken
    h.submit("again", input_ids=PROMPT, params=GREEDY, lora_path="a1")
    h.run_until_idle()
    assert h.results["again"].output_ids == h.results["r"].output_ids[:3]


def test_chunked_prefill_under_adapter_equals_whole(lora_dirs):
    whole = _harness(lora_dirs)
    chunked = _harness(lora_dirs, chunked_prefill_size=16)
    for h in (whole, chunked):
        h.submit("r", input_ids=PROMPT, params=GREEDY, lora_path="a3", return_logprob=True, logprob_start_len=0)
        h.run_until_idle()
    assert len([f for f in chunked.forwards if f.mode.is_extend()]) >= 3
    assert chunked.results["r"].output_ids == whole.results["r"].output_ids
    lp = lambda h: [v for d in h.results["r"].logprobs for v in (d.input_token_logprobs or [])[1:]]  # noqa: E731
    assert len(lp(chunked)) == len(lp(whole)) == len(PROMPT) - 1
    assert max(abs(a - b) for a, b in zip(lp(chunked), lp(whole))) < 1e-4
