"""Noticing a scheduler that is alive but makes no progress (deadlock, stopped, stuck in a call).

The scheduler bumps a shared heartbeat once per loop iteration (child_process.Heartbeat), also
when idle (it wakes every 100 ms). The tokenizer manager's watchdog samples it: while requests
are pending and the count has not moved for `--watchdog-timeout` seconds, the scheduler is
declared hung. Without pending work nothing is measured, so a quiet server is never declared
hung, and startup (model load, CUDA-graph capture) happens before the watchdog starts.
"""

from __future__ import annotations

import time
from typing import Optional

from sglang.runtime.managers.child_process import Heartbeat


class SchedulerHangWatch:
    def __init__(self, heartbeat: Heartbeat, timeout_s: float) -> None:
        self.heartbeat = heartbeat
        self.timeout_s = timeout_s
        self._last_count = heartbeat.read()
        self._last_progress = time.monotonic()

    def stalled_for(self, work_pending: bool) -> Optional[float]:
        """Seconds without progress if that exceeds the timeout while work is pending, else None."""
        count, now = self.heartbeat.read(), time.monotonic()
        if count != self._last_count or not work_pending:
            self._last_count, self._last_progress = count, now
            return None
        stalled = now - self._last_progress
        return stalled if stalled > self.timeout_s else None
