"""The scheduler subprocess: a ZMQ loop around Scheduler.

It blocks on its socket when idle (no busy spinning), drains all pending messages before each
step when busy, bumps the heartbeat the parent's watchdog reads once per iteration, and exits
within a poll interval when its parent process is gone, busy or not (see child_process.py).
"""

from __future__ import annotations

import logging
import os
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
                          heartbeat: Optional[Heartbeat] = None, dp_rank: int = 0) -> None:
    replica = f"DP{dp_rank} " if server_args.dp_size > 1 else ""
    configure_logging(server_args.log_level, prefix=f"scheduler {replica}TP{tp_rank}")
    # tqdm's default lock is a multiprocessing semaphore that leaks (with a warning at exit) when
    # this process is terminated; a thread lock is all one process needs.
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    parent = ParentWatch()
    exit_when_parent_dies("scheduler", port_args, parent)
    try:
        runner, group = _build_runner(server_args, port_args, tp_rank)
        if tp_rank > 0:
            pipe_writer.send({"status": "ready"})
        else:
            scheduler = _build_scheduler(server_args, runner, group)
            pipe_writer.send({
                "status": "ready",
                "max_total_num_tokens": runner.max_total_num_tokens,
                "max_running_requests": runner.max_running_requests,
                "context_len": runner.context_len,
                "vocab_size": runner.vocab_size(),
                "eos_token_ids": sorted(runner.eos_token_ids()),
                "architecture": runner.model_config.architecture,
                "is_generation": runner.is_generation,
            })
    except Exception as exc:
        logger.error("scheduler failed to start: %s", traceback.format_exc())
        pipe_writer.send({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
        return
    if tp_rank > 0:
        _follow(runner, group)
        return
    loop = SchedulerLoop(scheduler, port_args, parent, heartbeat)
    if group is not None:
        _stop_on_sigterm(loop)
    loop.run()
    if loop.stop_requested:
        _stop_followers(scheduler)
        logging.shutdown()
        os._exit(0)  # the launcher removes the ipc directory; skip process-group teardown
    exit_orphaned("scheduler", port_args)  # run() returns only once the parent is gone


def _stop_on_sigterm(loop: "SchedulerLoop") -> None:
    """Tensor-parallel rank 0 ends its loop on SIGTERM (the launcher's normal stop) so it can tell
    the followers, which then exit 0 instead of failing on a vanished peer."""
    import signal

    def request_stop(signum, frame) -> None:
        loop.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)


def _stop_followers(scheduler) -> None:
    try:
        scheduler.mirror.stop_followers()
    except Exception as exc:  # a follower already gone: nothing left to tell
        logger.info("could not tell the tensor-parallel followers to stop (%s)", exc)


def _build_runner(server_args: ServerArgs, port_args: PortArgs, tp_rank: int):
    """This rank's ModelRunner and, with tensor parallelism, the control group (capacities
    agreed over it: the minimum of all ranks)."""
    from sglang.runtime.model_executor.model_runner import ModelRunner

    if server_args.tp_size == 1:
        return ModelRunner(server_args), None
    from sglang.runtime.managers.tp_group import agree_on_capacity, new_control_group

    runner = ModelRunner(server_args, tp_rank, dist_init_method=port_args.tp_init_method)
    group = new_control_group()
    agree_on_capacity(runner, group)
    return runner, group


def _build_scheduler(server_args: ServerArgs, runner, group):
    from sglang.runtime.managers.scheduler import Scheduler

    mirror = None
    if group is not None:
        from sglang.runtime.managers.tp_group import broadcaster
        from sglang.runtime.managers.tp_mirror import TPLeader

        mirror = TPLeader(runner, broadcaster(group))
    return Scheduler(server_args, tokenizer=load_server_tokenizer(server_args), runner=runner, mirror=mirror)


def _follow(runner, group) -> None:
    """A follower rank mirrors rank 0 until rank 0 says stop (exit 0) or is gone (exit 1; the
    launcher, which takes the server down when any rank dies, may already be ending it)."""
    from sglang.runtime.managers.tp_group import run_follower

    try:
        run_follower(runner, group)
    except Exception as exc:
        logger.error("tensor-parallel follower TP%d stops: rank 0 is gone or failed (%s: %s)",
                     runner.tp_rank, type(exc).__name__, exc)
        logging.shutdown()
        os._exit(1)
    logging.shutdown()
    os._exit(0)  # without process-group teardown, which can abort while peers close theirs


class SchedulerLoop:
    def __init__(self, scheduler, port_args: PortArgs, parent: ParentWatch, heartbeat: Optional[Heartbeat] = None):
        self.scheduler = scheduler
        self.parent = parent
        self.stop_requested = False  # set by SIGTERM at tensor-parallel rank 0 (see _stop_on_sigterm)
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
            while self.parent.alive() and not self.stop_requested:
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
