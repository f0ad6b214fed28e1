"""Nodes 1..N-1 of a multi-node tensor-parallel launch (`--nnodes N --node-rank K`, K > 0).

Such a node runs only its share of the ranks (tp_size / nnodes scheduler processes, all of them
followers: rank 0 lives on node 0, schedules, and broadcasts every step). It has no tokenizer,
detokenizer or HTTP server; requests go to node 0. It lives as long as its ranks:
- rank 0 shuts down on purpose -> it sends `stop`, the ranks exit 0, so does this node;
- any rank dies (here or elsewhere: a vanished peer fails the broadcast) -> the others are
  stopped and the node exits 1;
- SIGTERM / SIGINT here -> the ranks are stopped and the node exits 0 (node 0's ranks then fail
  their next collective and node 0 goes down as after any rank's death).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import signal
import time
from typing import List

from sglang.runtime.checkpoint_path import use_local_checkpoint
from sglang.runtime.entrypoints.launch import (
    RuntimeProcesses,
    exit_if_spawn_bootstrap,
    local_ranks,
    spawn_children,
    tp_init_method,
    wait_all_ready,
)
from sglang.runtime.managers.scheduler_process import run_scheduler_process
from sglang.runtime.server_args import PortArgs, ServerArgs

logger = logging.getLogger(__name__)

_POLL_S = 0.2
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Interrupted(BaseException):
    pass


def _raise_interrupted(signum: int, frame) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def run_worker_node(server_args: ServerArgs) -> int:
    """Run this node's ranks until they end; returns the process exit code."""
    if server_args.node_rank == 0:
        raise ValueError("node 0 serves requests: launch it as a server or Engine, not a worker node")
    exit_if_spawn_bootstrap()
    use_local_checkpoint(server_args)
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in _SIGNALS}
    runtime = RuntimeProcesses([], PortArgs.new())
    try:
        port_args = dataclasses.replace(runtime.port_args,
                                        tp_init_method=tp_init_method(server_args, runtime.port_args, 0))
        targets = [(f"scheduler TP{rank}", run_scheduler_process, server_args, port_args, {"tp_rank": rank})
                   for rank in local_ranks(server_args)]
        wait_all_ready(runtime.procs, spawn_children(mp.get_context("spawn"), targets, runtime))
        ranks = local_ranks(server_args)
        logger.info("node %d of %d: tensor-parallel ranks %d-%d ready; requests go to node 0 (%s)",
                    server_args.node_rank, server_args.nnodes, ranks.start, ranks.stop - 1,
                    server_args.dist_init_addr)
        return _wait_ranks(runtime.procs)
    except _Interrupted as sig:
        logger.info("received %s; stopping this node's ranks", sig)
        return 0
    finally:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        runtime.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_ranks(procs: List[tuple]) -> int:
    """0 once every rank exited 0 (rank 0 stopped them); 1 as soon as one fails."""
    while True:
        codes = [proc.exitcode for _, proc in procs]
        failed = [(name, code) for (name, _), code in zip(procs, codes) if code not in (None, 0)]
        if failed:
            name, code = failed[0]
            logger.error("the %s process exited with code %s (a rank here or on another node failed); "
                         "stopping this node", name, code)
            return 1
        if all(code == 0 for code in codes):
            logger.info("rank 0 shut down; this node's ranks have exited")
            return 0
        time.sleep(_POLL_S)
