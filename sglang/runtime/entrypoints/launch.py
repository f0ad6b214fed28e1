"""Start the runtime's subprocesses (scheduler, detokenizer) and the tokenizer manager.

Shared by the offline Engine and the HTTP server so that both run the same scheduling code.
- The checkpoint path is resolved (a Hugging Face repo id becomes its cached snapshot) before
  anything is spawned.
- Children are started with 'spawn' (CUDA and fork do not mix) and report readiness through a
  pipe; a child that fails to start makes the launch fail with that child's own error message.
- A spawned child re-imports the user's main module. A script that creates an Engine outside an
  `if __name__ == "__main__":` guard would create one again inside each child; the child
  detects that and exits with a dedicated code, and the launcher says what to change.
- `RuntimeProcesses.stop` ends the children and removes the ipc directory; every exit path of
  the launcher (startup failure and interrupt included) goes through it.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from sglang.runtime.checkpoint_path import use_local_checkpoint
from sglang.runtime.managers.child_process import Heartbeat
from sglang.runtime.managers.detokenizer_manager import run_detokenizer_process
from sglang.runtime.managers.scheduler_process import run_scheduler_process
from sglang.runtime.managers.tokenizer_manager import TokenizerManager
from sglang.runtime.server_args import PortArgs, ServerArgs, split_host_port

logger = logging.getLogger(__name__)

_START_TIMEOUT_S = 1800.0
# Exit code of a spawned child that found itself re-running an unguarded Engine/server launch.
UNGUARDED_MAIN_EXIT_CODE = 87
UNGUARDED_MAIN_MESSAGE = (
    "sglang starts its scheduler and detokenizer with multiprocessing 'spawn', which re-imports "
    "your script in each child: create the Engine (or launch the server) under "
    "`if __name__ == \"__main__\":`")


@dataclass
class RuntimeProcesses:
    """The children of one runtime and the ipc directory their sockets live in."""

    procs: List[tuple]  # (name, multiprocessing.Process)
    port_args: PortArgs

    def stop(self, timeout: float = 5.0) -> None:
        shutdown_processes(self.procs, timeout)
        self.port_args.remove_ipc_dir()


def exit_if_spawn_bootstrap() -> None:
    """In a child that is still importing the parent's main module (multiprocessing's
    bootstrap), starting a runtime means the user's script has no main guard: leave quietly
    with a code the parent recognises instead of failing with multiprocessing's traceback."""
    if getattr(mp.current_process(), "_inheriting", False):
        raise SystemExit(UNGUARDED_MAIN_EXIT_CODE)


def _child_failure(name: str, proc) -> RuntimeError:
    proc.join(1.0)
    if proc.exitcode == UNGUARDED_MAIN_EXIT_CODE:
        return RuntimeError(UNGUARDED_MAIN_MESSAGE)
    return RuntimeError(f"the {name} process exited during startup (code {proc.exitcode}); see its log above")


def _read_status(name: str, proc, reader) -> Optional[dict]:
    """The child's startup report if one arrived (None if not yet); raises on a failure."""
    if not reader.poll(0):
        if not proc.is_alive():
            raise _child_failure(name, proc)
        return None
    try:
        msg = reader.recv()
    except EOFError:  # the child exited without a word
        raise _child_failure(name, proc) from None
    if isinstance(msg, dict) and msg.get("status") == "ready":
        return msg
    if isinstance(msg, str) and msg == "ready":
        return {"status": "ready"}
    detail = msg.get("message") if isinstance(msg, dict) else msg
    raise RuntimeError(f"the {name} process failed to start: {detail}")


def wait_all_ready(procs: List[tuple], readers: list) -> List[dict]:
    """Every child's readiness report, in order. Watched together: tensor-parallel ranks wait
    for each other while they start, so one rank's failure must be seen at once."""
    infos: List[Optional[dict]] = [None] * len(procs)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        for i, ((name, proc), reader) in enumerate(zip(procs, readers)):
            if infos[i] is None:
                infos[i] = _read_status(name, proc, reader)
        if all(info is not None for info in infos):
            return infos
        time.sleep(0.05)
    late = [name for (name, _), info in zip(procs, infos) if info is None]
    raise RuntimeError(f"the {', '.join(late)} process(es) did not become ready within {_START_TIMEOUT_S:.0f} s")


def launch_runtime(server_args: ServerArgs) -> Tuple[TokenizerManager, RuntimeProcesses]:
    exit_if_spawn_bootstrap()
    use_local_checkpoint(server_args)
    ctx = mp.get_context("spawn")
    heartbeats = [Heartbeat(ctx) for _ in range(server_args.dp_size)]
    runtime = RuntimeProcesses([], PortArgs.new())
    try:
        readers, leaders = _start_children(ctx, server_args, runtime, heartbeats)
        infos = wait_all_ready(runtime.procs, readers)
        tokenizer_manager = TokenizerManager(server_args, runtime.port_args, [infos[i] for i in leaders],
                                             runtime.procs, heartbeats=heartbeats)
    except BaseException:  # a startup error, or a signal while the model loads
        runtime.stop()
        raise
    return tokenizer_manager, runtime


def _replica_targets(server_args: ServerArgs, port_args: PortArgs, replica: int, heartbeat: Heartbeat) -> list:
    """(name, server args, port args, kwargs) of one data-parallel replica's scheduler processes
    on this node: one per local tensor-parallel rank, rank 0 first, on its own GPUs and
    scheduler socket (a multi-node launch's other ranks run on the other nodes)."""
    tp = server_args.tp_size
    if server_args.dp_size > 1:
        server_args = dataclasses.replace(server_args, base_gpu_id=server_args.base_gpu_id + replica * tp)
    port_args = port_args.for_replica(replica)
    if tp > 1:
        port_args = dataclasses.replace(port_args, tp_init_method=tp_init_method(server_args, port_args, replica))
    name = "scheduler" if replica == 0 else f"scheduler DP{replica}"
    targets = [(name, server_args, port_args, {"heartbeat": heartbeat, "dp_rank": replica})]
    targets += [(f"{name} TP{rank}", server_args, port_args, {"tp_rank": rank, "dp_rank": replica})
                for rank in local_ranks(server_args) if rank > 0]
    return targets


def _start_children(ctx, server_args: ServerArgs, runtime: RuntimeProcesses, heartbeats: List[Heartbeat]):
    """Each data-parallel replica's scheduler processes (see _replica_targets), then the one
    detokenizer all replicas send to. Returns the readiness pipes and the index of each
    replica's rank 0 among them (the tokenizer manager reads their reports)."""
    targets, leaders = [], []
    for replica in range(server_args.dp_size):
        leaders.append(len(targets))
        targets += [(name, run_scheduler_process, sargs, pargs, kwargs) for name, sargs, pargs, kwargs
                    in _replica_targets(server_args, runtime.port_args, replica, heartbeats[replica])]
    targets.append(("detokenizer", run_detokenizer_process, server_args, runtime.port_args, {}))
    return spawn_children(ctx, targets, runtime), leaders


def spawn_children(ctx, targets: list, runtime: RuntimeProcesses) -> list:
    """Start each (name, function, server args, port args, kwargs) as a daemon child that reports
    readiness through a pipe; returns the pipes' read ends in order."""
    readers = []
    for name, target, sargs, pargs, kwargs in targets:
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=target, args=(sargs, pargs, writer), kwargs=kwargs,
                           daemon=True, name="sglang-" + name.replace(" ", "-"))
        proc.start()
        writer.close()
        runtime.procs.append((name, proc))
        readers.append(reader)
    logger.info("started %s", ", ".join(f"the {name} process (pid {proc.pid})" for name, proc in runtime.procs))
    return readers


def tp_init_method(server_args: ServerArgs, port_args: PortArgs, replica: int) -> str:
    """Where a replica's tensor-parallel ranks meet: --dist-init-addr when given (the only way
    across nodes), else a file in the runtime's private ipc directory (removed with it; unlike a
    probed free TCP port, nothing else can take it before rank 0 binds)."""
    if server_args.dist_init_addr is not None:
        host, port = split_host_port(server_args.dist_init_addr)
        return f"tcp://{'[' + host + ']' if ':' in host else host}:{port}"
    return f"file://{os.path.join(port_args.ipc_dir, f'tp-rendezvous-{replica}')}"


def local_ranks(server_args: ServerArgs) -> range:
    """The tensor-parallel ranks this node runs (all of them on a single node)."""
    per_node = server_args.ranks_per_node
    return range(server_args.node_rank * per_node, (server_args.node_rank + 1) * per_node)


def shutdown_processes(procs: List[tuple], timeout: float = 5.0) -> None:
    """Stop children: tensor-parallel followers (" TP<k>" in their names) last, so each rank 0 can
    tell its followers (on every node) to stop before any of them is signalled."""
    deadline = time.monotonic() + timeout
    leaders = [p for p in procs if " TP" not in p[0]]
    followers = [p for p in procs if " TP" in p[0]]
    _stop(leaders, deadline)
    _stop(followers, deadline)


def _stop(procs: List[tuple], deadline: float) -> None:
    for _, proc in procs:
        if proc.is_alive():
            proc.terminate()
            _continue(proc.pid)  # a stopped (SIGSTOP) process acts on SIGTERM only once continued
    for _, proc in procs:
        proc.join(max(deadline - time.monotonic(), 0.1))
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)


def _continue(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except (ProcessLookupError, PermissionError):
        pass
