"""Property-based fuzzing of /generate, /v1/completions and /v1/chat/completions (issue 15).

Hypothesis generates groups of one to four requests (valid bodies, bodies with fields of random
types and sizes, bytes that are not JSON, random regexes / JSON schemas / EBNF with huge
repetition bounds; streamed or not; some clients hang up early) and sends each group at once to
one server whose scheduler runs under a memory cap (RLIMIT_DATA). It checks:
- every answer: 2xx or 4xx, 503 only where documented, error bodies in the route's shape, a 200
  in the form asked for (JSON with the route's fields, or SSE ending with [DONE]);
- throughout: /health answers 200 within 1 s, and the server's processes stay alive;
- afterwards: the memory of the server's process tree grew by less than RSS_GROWTH_LIMIT, no KV
  slot is leaked (after /flush_cache every slot is free), and a greedy request gives the same
  tokens as before the run.

The default is a fixed-seed slice of at least FAST_BODIES bodies (under a minute on 2 cores). The long run,
random, with at least N bodies:

    SGLANG_FUZZ_EXAMPLES=2000 python -m pytest tests/server/test_fuzz_http.py -q -s

(-s prints the per-route status counts, /health latency and memory; SGLANG_FUZZ_REPORT=path.json
also writes them there). A failure prints the smallest failing group and a seed to replay it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Optional

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from sglang.testing.fixtures import tiny_model_dir
from tests.server.fuzz_checks import Answer, check_answer
from tests.server.fuzz_monitor import MB, HealthPoller, MemorySampler, cap_data_segment, data_segment_bytes
from tests.server.fuzz_strategies import FOUND_GROUPS, FuzzRequest, request_groups
from tests.server.http_helpers import wait_kv_idle
from tests.server.server_process import ServerProcess, start_server

FAST_BODIES = 300
BODIES_PER_GROUP = 1.5  # hypothesis' groups held 1.75-2.3 requests on average in our runs; err low
SCHEDULER_HEADROOM = 768 * MB  # the scheduler's data segment may grow this much over its idle size
RSS_GROWTH_LIMIT = 600 * MB  # the whole process tree's resident memory, peak over start
HEALTH_LATENCY_LIMIT_S = 1.0
# Small running/queue limits so concurrent groups also meet the documented queue-full 503; a
# short context so that the largest token budgets stay affordable on CPU.
SERVER_ARGS = ["--device", "cpu", "--context-length", "256", "--max-running-requests", "4",
               "--max-queued-requests", "6"]
REFERENCE = {"text": "The quick brown fox", "sampling_params": {"max_new_tokens": 24, "temperature": 0,
                                                                 "ignore_eos": True}}
HANG_UP_READ_TIMEOUT_S = 0.2
REQUEST_TIMEOUT_S = 180.0  # above the 60 s grammar compile budget


def target_bodies() -> int:
    return int(os.environ.get("SGLANG_FUZZ_EXAMPLES") or FAST_BODIES)


def long_run() -> bool:
    return bool(os.environ.get("SGLANG_FUZZ_EXAMPLES"))


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ServerProcess]:
    server = start_server(tiny_model_dir("llama"), SERVER_ARGS)
    try:
        yield server
    finally:
        server.terminate()


class FuzzRun:
    """Sends groups of requests to the server at once and records what came back."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.client = httpx.Client(base_url=server.base_url, trust_env=False,
                                   timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0),
                                   limits=httpx.Limits(max_connections=8))
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.statuses: Dict[str, Counter] = {}
        self.kinds: Counter = Counter()
        self.sent = 0
        self.pids = [server.proc.pid, server.child_pid("scheduler"), server.child_pid("detokenizer")]
        # Set once a group killed the server: replays against a dead server prove nothing, so
        # they fail at once and the test reports this instead of hypothesis' "smallest" example.
        self.fatal: Optional[str] = None

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()

    def send_group(self, group: List[FuzzRequest]) -> None:
        assert self.fatal is None, self.fatal
        answers = list(self.pool.map(self.send, group))
        for req, answer in zip(group, answers):
            self.sent += 1
            self.kinds[req.kind] += 1
            self.kinds["streamed"] += req.streamed
            self.statuses.setdefault(req.route, Counter())[_status_key(answer)] += 1
        dead = self.dead_pids()
        if dead:
            self.fatal = f"server process(es) {dead} died on {group!r}:\n{self.server.log()[-4000:]}"
            raise AssertionError(self.fatal)
        for req, answer in zip(group, answers):
            try:
                check_answer(req, answer)
            except AssertionError as exc:
                raise AssertionError(f"{req!r}: {exc}") from None

    def send(self, req: FuzzRequest) -> Answer:
        try:
            return self._send(req)
        except httpx.TransportError as exc:  # no HTTP answer: the server died or dropped the connection
            return Answer(-1, "", repr(exc).encode(), complete=True)

    def _send(self, req: FuzzRequest) -> Answer:
        headers = {"Content-Type": "application/json"}
        if req.hang_up and not req.streamed:  # leave before the whole answer is ready
            try:
                reply = self.client.post(req.route, content=req.body, headers=headers,
                                         timeout=httpx.Timeout(HANG_UP_READ_TIMEOUT_S, connect=10.0))
            except httpx.ReadTimeout:
                return Answer(0, "", b"", complete=False)
            return Answer(reply.status_code, reply.headers.get("content-type", ""), reply.content, True)
        with self.client.stream("POST", req.route, content=req.body, headers=headers) as reply:
            content_type = reply.headers.get("content-type", "")
            if req.hang_up:  # a streaming client that leaves after the first bytes
                next(reply.iter_raw(), b"")
                return Answer(reply.status_code, content_type, b"", complete=False)
            return Answer(reply.status_code, content_type, reply.read(), complete=True)

    def dead_pids(self) -> List[int]:
        return [pid for pid in self.pids if not _alive(pid)]

    def summary(self) -> dict:
        return {"bodies": self.sent, "kinds": dict(self.kinds),
                "statuses": {route: {str(k): v for k, v in sorted(c.items(), key=str)}
                             for route, c in sorted(self.statuses.items())}}


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _status_key(answer: Answer) -> str:
    return {0: "hung up", -1: "no answer"}.get(answer.status, str(answer.status))


def greedy_ids(base_url: str) -> List[int]:
    reply = httpx.post(base_url + "/generate", json=REFERENCE, timeout=60, trust_env=False)
    assert reply.status_code == 200, reply.text
    ids = reply.json()["output_ids"]
    assert len(ids) == REFERENCE["sampling_params"]["max_new_tokens"], ids
    return ids


def fuzz_settings(groups: int) -> settings:
    return settings(max_examples=groups, deadline=None, derandomize=not long_run(), database=None,
                    print_blob=True, phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


def run_fuzz(run: FuzzRun, bodies: int) -> None:
    def fuzz(group: List[FuzzRequest]) -> None:
        run.send_group(group)

    for group in FOUND_GROUPS:
        fuzz = example(group)(fuzz)
    fuzz = fuzz_settings(math.ceil(bodies / BODIES_PER_GROUP))(given(request_groups())(fuzz))
    fuzz()


def assert_no_kv_leak(base_url: str) -> dict:
    wait_kv_idle(base_url, timeout=120)
    flushed = httpx.post(base_url + "/flush_cache", timeout=60, trust_env=False)
    assert flushed.status_code == 200, flushed.text
    info = httpx.get(base_url + "/get_server_info", timeout=60, trust_env=False).json()
    assert info["free_kv_tokens"] == info["max_total_num_tokens"], info
    return info


# The long run's time grows with its size (pytest-timeout's 600 s default would cut it short).
@pytest.mark.timeout(600 + target_bodies() // 2)
def test_fuzz_http(fuzz_server: ServerProcess) -> None:
    base_url = fuzz_server.base_url
    scheduler = fuzz_server.child_pid("scheduler")
    cap = cap_data_segment(scheduler, SCHEDULER_HEADROOM)
    reference = greedy_ids(base_url)
    run = FuzzRun(fuzz_server)
    started = time.monotonic()
    log_start = len(fuzz_server.log())
    try:
        with HealthPoller(base_url) as health, MemorySampler(fuzz_server.proc.pid, scheduler) as memory:
            run_fuzz(run, target_bodies())
    except BaseException:
        if run.fatal:  # the group that killed the server, not a replay against the dead one
            raise AssertionError(run.fatal) from None
        raise
    finally:
        run.close()
    report = {**run.summary(), "wall_s": round(time.monotonic() - started, 1),
              "health_max_latency_s": round(health.max_latency, 3), "health_samples": health.samples,
              "rss_mb": {"start": memory.start_rss // MB, "peak": memory.peak_rss // MB, "end": memory.end_rss // MB},
              "scheduler_data_mb": {"cap": cap // MB, "peak": memory.peak_data // MB,
                                    "end": data_segment_bytes(scheduler) // MB}}
    _publish(report)
    assert not run.dead_pids()
    assert run.sent >= target_bodies(), report
    # Every failure must be answered, not escape: no traceback in the server's log.
    log = fuzz_server.log()[log_start:]
    assert "Traceback" not in log, log[max(0, log.find("Traceback") - 2000):][:6000]
    assert not health.failures, health.failures[:10]
    assert health.max_latency < HEALTH_LATENCY_LIMIT_S, report
    assert memory.peak_rss - memory.start_rss < RSS_GROWTH_LIMIT, report
    assert_no_kv_leak(base_url)
    assert greedy_ids(base_url) == reference


def _publish(report: dict) -> None:
    print("\nfuzz report:", json.dumps(report, indent=1))
    path = os.environ.get("SGLANG_FUZZ_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(report, out, indent=1)
