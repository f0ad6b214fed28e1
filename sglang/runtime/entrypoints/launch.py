"""Start the runtime's subprocesses (scheduler, detokenizer) and the tokenizer manager.

Shared by the offline Engine and the HTTP server so that both run the same scheduling code.
Children are started with 'spawn' (CUDA and fork do not mix) and report readiness through a pipe;
a child that fails to start makes the launch fail with that child's own error message.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from typing import List, Tuple

from sglang.runtime.managers.detokenizer_manager import run_detokenizer_process
from sglang.runtime.managers.scheduler_process import run_scheduler_process
from sglang.runtime.managers.tokenizer_manager import TokenizerManager
from sglang.runtime.server_args import PortArgs, ServerArgs

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 1800.0


def _wait_ready(name: str, proc, reader) -> dict:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if reader.poll(0.2):
            try:
                msg = reader.recv()
            except EOFError:
                msg = None
            if isinstance(msg, dict) and msg.get("status") == "ready":
                return msg
            if isinstance(msg, str) and msg == "ready":
                return {"status": "ready"}
            detail = msg.get("message") if isinstance(msg, dict) else msg
            raise RuntimeError(f"the {name} process failed to start: {detail}")
        if not proc.is_alive():
            raise RuntimeError(f"the {name} process exited during startup (code {proc.exitcode}); see its log above")
    raise RuntimeError(f"the {name} process did not become ready within {_START_TIMEOUT_S:.0f} s")


def launch_runtime(server_args: ServerArgs) -> Tuple[TokenizerManager, List[tuple]]:
    port_args = PortArgs.new()
    ctx = mp.get_context("spawn")
    procs: List[tuple] = []
    readers = []
    for name, target in (("scheduler", run_scheduler_process), ("detokenizer", run_detokenizer_process)):
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(server_args, port_args, writer), daemon=True, name=f"sglang-{name}")
        proc.start()
        writer.close()
        procs.append((name, proc))
        readers.append(reader)
    try:
        infos = [_wait_ready(name, proc, reader) for (name, proc), reader in zip(procs, readers)]
    except Exception:
        shutdown_processes(procs)
        raise
    tokenizer_manager = TokenizerManager(server_args, port_args, infos[0], procs)
    return tokenizer_manager, procs


def shutdown_processes(procs: List[tuple], timeout: float = 5.0) -> None:
    for _, proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + timeout
    for _, proc in procs:
        proc.join(max(deadline - time.monotonic(), 0.1))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
