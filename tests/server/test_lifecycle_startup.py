"""Startup checks that run before any process is spawned: --model-path (local directory or a
Hugging Face repo id through the local cache), --device cuda without CUDA; and a startup that
fails later leaves no ipc directory behind."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sglang.testing.fixtures import tiny_model_dir
from tests.server.lifecycle_helpers import ipc_dirs, private_tmp
from tests.server.server_process import REPO_ROOT, ServerProcess

REPO_ID = "tiny-org/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _launch(args: list, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sglang.launch_server", *args], cwd=REPO_ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def _cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fake_hub_cache(root: Path, repo_id: str, checkpoint: str) -> Path:
    """HF_HOME with `repo_id` cached at COMMIT, laid out as huggingface_hub stores it."""
    repo = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(checkpoint, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def _empty_dir(tmp_path: Path) -> str:
    path = tmp_path / "empty"
    path.mkdir()
    return str(path)


def _no_config_dir(tmp_path: Path) -> str:
    path = Path(_empty_dir(tmp_path))
    (path / "tokenizer.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return str(path)


BAD_PATHS = {
    "missing": (lambda tmp: str(tmp / "no-such-dir"), "no such directory"),
    "empty": (_empty_dir, "is an empty directory"),
    "no-config": (_no_config_dir, "has no config.json"),
    "unknown-repo-offline": (lambda tmp: "no-org/no-model", "has no snapshot of that repo"),
}


@pytest.mark.parametrize("case", list(BAD_PATHS))
def test_bad_model_path_fails_at_once_with_one_line(tmp_path, case):
    make_path, expected = BAD_PATHS[case]
    path = make_path(tmp_path)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", **private_tmp(tmp_path)}
    cpu_before, started = _cpu_seconds_of_children(), time.monotonic()
    done = _launch(["--model-path", path], env)
    wall, cpu = time.monotonic() - started, _cpu_seconds_of_children() - cpu_before
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and repr(path) in lines[0], done.stderr[-3000:]
    assert cpu < 2.0 and wall < 10.0, (cpu, wall)  # no model, no torch, no child process
    assert ipc_dirs(tmp_path) == []


def test_engine_checks_the_model_path_before_spawning(tmp_path):
    import psutil

    import sglang

    before = psutil.Process().children()
    with pytest.raises(ValueError, match="no such directory"):  # ModelPathError
        sglang.Engine(model_path=str(tmp_path / "nothing"), device="cpu")
    assert psutil.Process().children() == before


def test_repo_id_resolves_through_the_offline_hub_cache(tmp_path):
    hf_home = fake_hub_cache(tmp_path / "hf", REPO_ID, tiny_model_dir("llama"))
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", **private_tmp(tmp_path)}
    server = ServerProcess(REPO_ID, ["--device", "cpu"], env=env)
    try:
        server.wait_healthy()
        reply = httpx.post(server.base_url + "/generate", timeout=60, trust_env=False,
                           json={"text": "Hello", "sampling_params": {"max_new_tokens": 3, "temperature": 0}})
        assert reply.status_code == 200 and reply.json()["meta_info"]["completion_tokens"] == 3
        info = httpx.get(server.base_url + "/get_model_info", timeout=30, trust_env=False).json()
        assert info["model_path"].endswith(os.path.join("snapshots", COMMIT))
        assert server.terminate() == 0
        assert ipc_dirs(tmp_path) == []  # removed on a normal exit
    finally:
        server.kill()


def test_wanted_files_pick_one_weight_format():
    from sglang.runtime.checkpoint_path import _wanted_files

    files = ["config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin", "README.md",
             "original/consolidated.pth", "onnx/model.json"]
    side = ["config.json", "tokenizer.json"]
    assert _wanted_files(files, "auto") == side + ["model.safetensors"]
    assert _wanted_files(files, "pt") == side + ["pytorch_model.bin"]
    assert _wanted_files([f for f in files if not f.endswith(".safetensors")], "auto") == side + ["pytorch_model.bin"]
    assert _wanted_files(files, "dummy") == side and _wanted_files(files, None) == side


def test_online_repo_id_downloads_only_what_the_runtime_reads(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    from sglang.runtime import checkpoint_path

    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None, local_files_only=False):
        calls.append((repo_id, revision, allow_patterns, local_files_only))
        return tiny_model_dir("llama")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr(checkpoint_path, "_repo_files",
                        lambda repo_id, revision: ["config.json", "model.safetensors", "model.bin", "README.md"])
    assert checkpoint_path.resolve_checkpoint_dir("org/model", "v1") == tiny_model_dir("llama")
    assert calls == [("org/model", "v1", ["config.json", "model.safetensors"], False)]

    monkeypatch.setattr(checkpoint_path, "_repo_files", lambda repo_id, revision: ["README.md"])
    with pytest.raises(ValueError, match="has no config.json"):
        checkpoint_path.resolve_checkpoint_dir("org/model")


def test_repo_id_shape():
    from sglang.runtime.checkpoint_path import looks_like_repo_id

    assert looks_like_repo_id("meta-llama/Llama-3.1-8B-Instruct") and looks_like_repo_id("Qwen/Qwen2.5-0.5B")
    for path in ("/abs/dir", "./rel", "a/b/c", "name", "org/../x", "org/a--b"):
        assert not looks_like_repo_id(path), path


def test_cuda_device_without_cuda_is_refused(monkeypatch, tmp_path):
    import torch

    from sglang.runtime.server_args import ServerArgs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cuda: CUDA is not available"):
        ServerArgs(model_path=str(tmp_path), device="cuda")
    assert ServerArgs(model_path=str(tmp_path), device="auto").device == "cpu"


def test_cli_cuda_device_without_cuda_says_so(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "", **private_tmp(tmp_path)}
    done = _launch(["--model-path", tiny_model_dir("llama"), "--device", "cuda"], env)
    assert done.returncode != 0
    assert "CUDA is not available" in done.stderr and "AttributeError" not in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert ipc_dirs(tmp_path) == []


def test_failed_startup_removes_the_ipc_directory(tmp_path):
    checkpoint = tmp_path / "unsupported"
    shutil.copytree(tiny_model_dir("llama"), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (checkpoint / "config.json").write_text(json.dumps(config))
    done = _launch(["--model-path", str(checkpoint), "--device", "cpu"], private_tmp(tmp_path))
    assert done.returncode == 1 and "NoSuchModelForCausalLM" in done.stderr, done.stderr[-3000:]
    assert ipc_dirs(tmp_path) == []


def test_sigterm_during_startup_stops_the_children_and_removes_the_ipc_directory(tmp_path):
    import signal

    import psutil

    server = ServerProcess(tiny_model_dir("llama"), ["--device", "cpu"], env=private_tmp(tmp_path))
    children = []
    try:
        deadline = time.monotonic() + 120
        while "the scheduler process (pid" not in server.log() and time.monotonic() < deadline:
            assert server.proc.poll() is None, server.log()[-3000:]
            time.sleep(0.05)
        children = psutil.Process(server.proc.pid).children(recursive=True)
        assert children and ipc_dirs(tmp_path)
        server.proc.send_signal(signal.SIGTERM)  # while the model loads
        assert server.proc.wait(30) == 0
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive and ipc_dirs(tmp_path) == []
        assert "received SIGTERM" in server.log()
    finally:
        server.kill()
        for proc in children:
            if proc.is_running():
                proc.kill()
