"""Watching a server while it is fuzzed: /health latency, memory of its process tree, and a cap
on the scheduler's memory so that a runaway allocation kills it (and fails the test) instead of
eating the machine."""

from __future__ import annotations

import multiprocessing
import queue
import resource
import threading
import time
from typing import List, Optional

import httpx
import psutil

MB = 1 << 20


def data_segment_bytes(pid: int) -> int:
    """VmData of a process: its private writable memory (heap, anonymous mmaps, thread arenas)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmData in /proc/{pid}/status")


def cap_data_segment(pid: int, headroom_bytes: int) -> int:
    """Limit `pid`'s data segment to what it holds now plus `headroom_bytes`; returns the limit.

    RLIMIT_DATA rather than RLIMIT_AS: address space counts reservations that are never touched
    (thread stacks, allocator arenas, library mappings), so an AS cap would have to be loose to be
    safe; the data limit counts the memory a runaway tensor or list would actually need. Since
    Linux 4.7 it covers anonymous mmaps too, so large allocations (mmap'd by malloc) fail."""
    limit = data_segment_bytes(pid) + headroom_bytes
    resource.prlimit(pid, resource.RLIMIT_DATA, (limit, limit))
    return limit


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass  # exited between listing and reading
    return total


class HealthPoller:
    """GET /health throughout, from a process of its own: a thread of the test process would
    wait for the GIL while hypothesis builds a multi-megabyte body, and count that as server
    latency. Records the slowest answer and every failure."""

    def __init__(self, base_url: str, interval: float = 0.1, timeout: float = 10.0):
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._max_latency = ctx.Value("d", 0.0)
        self._samples = ctx.Value("l", 0)
        self._failures = ctx.Queue()
        self._proc = ctx.Process(target=_poll_health, daemon=True,
                                 args=(base_url, interval, timeout, self._stop, self._max_latency,
                                       self._samples, self._failures))
        self.failures: List[str] = []

    @property
    def max_latency(self) -> float:
        return self._max_latency.value

    @property
    def samples(self) -> int:
        return self._samples.value

    def __enter__(self) -> "HealthPoller":
        self._proc.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        while self._proc.is_alive() or not self._failures.empty():
            try:
                self.failures.append(self._failures.get(timeout=0.5))
            except queue.Empty:
                self._proc.join(0.5)


def _poll_health(base_url: str, interval: float, timeout: float, stop, max_latency, samples, failures) -> None:
    with httpx.Client(base_url=base_url, timeout=timeout, trust_env=False) as client:
        while not stop.is_set():
            start = time.monotonic()
            try:
                status: Optional[int] = client.get("/health").status_code
            except httpx.HTTPError as exc:
                status, error = None, repr(exc)
            latency = time.monotonic() - start
            max_latency.value = max(max_latency.value, latency)
            samples.value += 1
            if status != 200:
                failures.put(f"/health -> {status if status is not None else error} after {latency:.2f} s")
            stop.wait(interval)


class MemorySampler:
    """RSS of a process tree, sampled by a thread: at start, the peak while running, at the end;
    and the peak data segment of one process of it (`watched`, the capped scheduler)."""

    def __init__(self, pid: int, watched: int, interval: float = 0.2):
        self.pid = pid
        self.watched = watched
        self.interval = interval
        self.start_rss = tree_rss(pid)
        self.peak_rss = self.end_rss = self.start_rss
        self.peak_data = data_segment_bytes(watched)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rss = tree_rss(self.pid)
                self.peak_data = max(self.peak_data, data_segment_bytes(self.watched))
            except (psutil.Error, OSError):
                return  # the server died; the test sees that on its own
            self.peak_rss = max(self.peak_rss, rss)
            self.end_rss = rss
