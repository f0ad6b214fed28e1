"""The scheduler subprocess: a ZMQ loop around Scheduler.

It blocks on its socket when idle (no busy spinning), drains all pending messages before each
step when busy, bumps the heartbeat the parent's watchdog reads once per iteration, and exits
within a poll interval when its parent process is gone, busy or not (see child_process.py).
"""

from __future__ import annotations

import logging
import traceback
from typing import Optional

import zmq

from sglang.runtime.managers.child_process import (
    Heartbeat,
    ParentWatch,
    exit_orphaned,
    exit_when_parent_dies,
    new_zmq_context,
)
from sglang.runtime.server_args import PortArgs, ServerArgs
from sglang.runtime.utils import configure_logging, load_server_tokenizer

logger = logging.getLogger(__name__)

_IDLE_POLL_MS = 100


def run_scheduler_process(server_args: ServerArgs, port_args: PortArgs, pipe_writer, tp_rank: int = 0,
                          heartbeat: Optional[Heartbeat] = None) -> None:
    configure_logging(server_args.log_level, prefix=f"scheduler TP{tp_rank}")
    # tqdm's default lock is a multiprocessing semaphore that leaks (with a warning at exit) when
    # this process is terminated; a thread lock is all one process needs.
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    parent = ParentWatch()
    exit_when_parent_dies("scheduler", port_args, parent)
    try:
        from sglang.runtime.managers.scheduler import Scheduler

        scheduler = Scheduler(server_args, tokenizer=load_server_tokenizer(server_args))
        runner = scheduler.runner
        pipe_writer.send({
            "status": "ready",
            "max_total_num_tokens": runner.max_total_num_tokens,
            "max_running_requests": runner.max_running_requests,
            "context_len": runner.context_len,
            "vocab_size": runner.vocab_size(),
            "eos_token_ids": sorted(runner.eos_token_ids()),
            "architecture": runner.model_config.architecture,
        })
    except Exception as exc:
        logger.error("scheduler failed to start: %s", traceback.format_exc())
        pipe_writer.send({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
        return
    SchedulerLoop(scheduler, port_args, parent, heartbeat).run()
    exit_orphaned("scheduler", port_args)  # run() returns only once the parent is gone


class SchedulerLoop:
    def __init__(self, scheduler, port_args: PortArgs, parent: ParentWatch, heartbeat: Optional[Heartbeat] = None):
        self.scheduler = scheduler
        self.parent = parent
        self.heartbeat = heartbeat
        self.ctx = new_zmq_context()
        self.recv = self.ctx.socket(zmq.PULL)
        self.recv.bind(port_args.scheduler_ipc)
        self.send = self.ctx.socket(zmq.PUSH)
        self.send.connect(port_args.detokenizer_ipc)

    def _drain(self, timeout_ms: int) -> list:
        msgs = []
        if not self.recv.poll(timeout_ms):
            return msgs
        while True:
            try:
                msgs.append(self.recv.recv_pyobj(zmq.NOBLOCK))
            except zmq.Again:
                return msgs

    def run(self) -> None:
        """Serve until the parent process is gone, then close the sockets and return."""
        sched = self.scheduler
        try:
            while self.parent.alive():
                if self.heartbeat is not None:
                    self.heartbeat.beat()
                busy = sched.has_work()
                for msg in self._drain(0 if busy else _IDLE_POLL_MS):
                    reply = sched.handle(msg)
                    if reply is not None:
                        self.send.send_pyobj(reply)
                for out in sched.step():
                    self.send.send_pyobj(out)
        finally:
            self.ctx.destroy(linger=0)
