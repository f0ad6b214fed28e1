"""Multi-node tensor parallelism on loopback: node 0 is an Engine in this process, node 1 a
separate `python -m sglang.launch_server --node-rank 1` launch, meeting at --dist-init-addr.
Outputs equal a single-node launch; node 0's shutdown ends node 1 with exit code 0; node 1's death
fails node 0's next call within seconds; bad multi-node flags are refused with a message."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

import pytest

import sglang
from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_model_dir

PROMPTS = ["The capital of France is a city that", "Numbers: one two three four five six seven"]
GREEDY = {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True}
ARGS = {"device": "cpu", "max_total_tokens": 512, "random_seed": 5}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_node1(model: str, tp_size: int, addr: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", model, "--device", "cpu",
           "--tp-size", str(tp_size), "--nnodes", "2", "--node-rank", "1", "--dist-init-addr", addr,
           "--max-total-tokens", "512"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _outputs(engine) -> list:
    outs = engine.generate(PROMPTS, GREEDY, return_logprob=True, logprob_start_len=0)
    return [(o["output_ids"], [t[0] for t in o["meta_info"]["input_token_logprobs"][1:]]) for o in outs]


@pytest.fixture(scope="module")
def reference() -> list:
    with sglang.Engine(model_path=tiny_model_dir("llama"), tp_size=2, **ARGS) as engine:
        return _outputs(engine)


def _assert_same(reference: list, got: list) -> None:
    for (ids_a, lp_a), (ids_b, lp_b) in zip(reference, got):
        assert ids_b == ids_a
        assert max(abs(x - y) for x, y in zip(lp_a, lp_b)) <= 1e-5


@pytest.mark.parametrize("tp_size", [2, 4])
def test_two_nodes_equal_one(reference, tp_size):
    """tp 2 (one rank per node) and tp 4 (two per node: node 1 holds ranks 2 and 3)."""
    model, addr = tiny_model_dir("llama"), f"127.0.0.1:{_free_port()}"
    node1 = _start_node1(model, tp_size, addr)
    try:
        with sglang.Engine(model_path=model, tp_size=tp_size, nnodes=2, node_rank=0, dist_init_addr=addr,
                           **ARGS) as engine:
            _assert_same(reference, _outputs(engine))
        # Node 0 stopped on purpose: rank 0 told the followers, so node 1 ends cleanly.
        out, _ = node1.communicate(timeout=30)
        assert node1.returncode == 0, out
        assert "rank 0 shut down" in out
    finally:
        if node1.poll() is None:
            node1.kill()
            node1.wait()


def test_node1_death_fails_node0_quickly():
    model, addr = tiny_model_dir("llama"), f"127.0.0.1:{_free_port()}"
    node1 = _start_node1(model, 2, addr)
    try:
        with sglang.Engine(model_path=model, tp_size=2, nnodes=2, node_rank=0, dist_init_addr=addr,
                           **ARGS) as engine:
            assert engine.generate(PROMPTS[0], GREEDY)["output_ids"]
            _kill_tree(node1.pid)
            node1.wait(timeout=10)
            start = time.monotonic()
            with pytest.raises(Exception):
                engine.generate(PROMPTS[1], GREEDY)
            assert time.monotonic() - start < 5
    finally:
        if node1.poll() is None:
            node1.kill()
            node1.wait()


def _kill_tree(pid: int) -> None:
    """SIGKILL a launcher and its rank processes (what a crashed machine looks like)."""
    import psutil

    parent = psutil.Process(pid)
    for proc in parent.children(recursive=True) + [parent]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.parametrize("kwargs, message", [
    ({"tp_size": 2, "nnodes": 2}, "needs --dist-init-addr"),
    ({"tp_size": 3, "nnodes": 2, "dist_init_addr": "h:1"}, "multiple of --nnodes"),
    ({"tp_size": 2, "nnodes": 2, "node_rank": 2, "dist_init_addr": "h:1"}, "--node-rank must be in"),
    ({"tp_size": 2, "nnodes": 2, "dp_size": 2, "dist_init_addr": "h:1"}, "--dp-size > 1 with --nnodes"),
    ({"tp_size": 2, "dist_init_addr": "nohost"}, "HOST:PORT"),
    ({"tp_size": 2, "dist_init_addr": "h:99999"}, "HOST:PORT"),
])
def test_bad_multi_node_flags_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ServerArgs(model_path="m", device="cpu", **kwargs)


def test_rank_layout():
    from sglang.runtime.entrypoints.launch import local_ranks, tp_init_method

    args = ServerArgs(model_path="m", device="cpu", tp_size=8, nnodes=2, node_rank=1, dist_init_addr="[::1]:29500",
                      base_gpu_id=1)
    assert list(local_ranks(args)) == [4, 5, 6, 7]
    assert [args.local_gpu(r) for r in local_ranks(args)] == [1, 2, 3, 4]
    assert tp_init_method(args, None, 0) == "tcp://[::1]:29500"
