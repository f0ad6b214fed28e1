"""What the runtime's child processes (scheduler, detokenizer) share so that they never outlive
their parent and never hang on the way out.

- A daemon thread watches the parent (`os.getppid()` changes when the child is re-parented after
  its parent's death, kill -9 included) whatever the main thread is doing: loading the model, a
  long batch, or blocked in a send to a process that is gone. The loops also check it each
  iteration, so an idle child leaves through its normal path.
- Every socket has linger 0, so closing the ZMQ context never waits for undelivered messages.
- An orphaned child removes the ipc directory (nobody else is left to do it) and exits with
  `os._exit`, which skips joining worker threads that could still be busy.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import threading
import time
from typing import Any, Optional

import zmq

logger = logging.getLogger(__name__)

_PARENT_POLL_S = 0.25


class ParentWatch:
    def __init__(self, parent_pid: Optional[int] = None) -> None:
        self.pid = parent_pid if parent_pid is not None else launcher_pid()

    def alive(self) -> bool:
        return os.getppid() == self.pid


def launcher_pid() -> int:
    """The pid of the process that spawned this one, even if it has died since."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else os.getppid()


def exit_when_parent_dies(name: str, port_args: Any, parent: ParentWatch) -> threading.Thread:
    def watch() -> None:
        while parent.alive():
            time.sleep(_PARENT_POLL_S)
        exit_orphaned(name, port_args)

    thread = threading.Thread(target=watch, name=f"{name}-parent-watch", daemon=True)
    thread.start()
    return thread


class Heartbeat:
    """A counter in shared memory that the scheduler bumps every loop iteration and the
    tokenizer manager's watchdog reads. Lock-free (RawValue): a stopped writer can never block
    the reader. Created by the launcher and passed to the child at spawn."""

    def __init__(self, mp_context: Any) -> None:
        self._count = mp_context.RawValue(ctypes.c_uint64, 0)

    def beat(self) -> None:
        self._count.value += 1

    def read(self) -> int:
        return self._count.value


def new_zmq_context() -> zmq.Context:
    ctx = zmq.Context(1)
    ctx.setsockopt(zmq.LINGER, 0)  # applies to every socket made from it
    return ctx


def exit_orphaned(name: str, port_args: Any) -> None:
    """End this child after its parent died: remove the ipc sockets' directory, flush the log,
    exit at once."""
    logger.info("parent process is gone; %s exiting", name)
    port_args.remove_ipc_dir()
    logging.shutdown()
    os._exit(0)
