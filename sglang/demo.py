"""The README's main job: the server on the embedded tiny model, and a program talking to it.

    python -m sglang.demo [--arch llama] [--device cpu] [--port 0]

It writes a tiny random checkpoint (real BPE tokenizer, chat template) to a temporary folder,
starts `python -m sglang.launch_server` on it, then runs a small client program: an OpenAI-style
chat completion, a streamed completion, a regex-constrained native /generate call, and a repeated
prompt that hits the RadixAttention cache. The weights are random, so the words are gibberish;
what it shows is the whole pipeline working end to end. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time

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
        "model": "default", "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 12, "temperature": 0}).json()
    print("chat completion:", repr(chat["choices"][0]["message"]["content"]), "| usage:", chat["usage"])

    print("streamed completion: ", end="", flush=True)
    with client.stream("POST", "/v1/completions", json={
            "model": "default", "prompt": "Once upon a time", "max_tokens": 16, "stream": True,
            "temperature": 0.8, "seed": 1}) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                print(json.loads(line[6:])["choices"][0]["text"], end="", flush=True)
    print()

    out = client.post("/generate", json={
        "text": "My phone number is", "sampling_params": {
            "max_new_tokens": 32, "temperature": 1.0, "regex": r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}"}}).json()
    print("regex-constrained /generate:", repr(out["text"]),
          "| jump-forward tokens:", out["meta_info"].get("jump_forward_tokens", 0))

    prompt = "The quick brown fox jumps over the lazy dog. " * 4
    for attempt in ("first", "again"):
        meta = client.post("/generate", json={"text": prompt, "sampling_params": {"max_new_tokens": 4}}).json()
        meta = meta["meta_info"]
        print(f"{attempt}: prompt {meta['prompt_tokens']} tokens, {meta['cached_tokens']} from the radix cache")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="llama", help="Tiny model family: llama, mistral, qwen2, qwen3, gemma2.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    parser.add_argument("--port", type=int, default=0, help="Server port (0: pick a free one).")
    args = parser.parse_args(argv)

    from sglang.testing.tiny_model import make_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="sglang-demo-") as tmp:
        path = make_tiny_checkpoint(args.arch, tmp)
        port = args.port or _free_port()
        base = f"http://127.0.0.1:{port}"
        print(f"tiny {args.arch} checkpoint written to {path}; starting the server on {base}")
        server = subprocess.Popen([sys.executable, "-m", "sglang.launch_server", "--model-path", path,
                                   "--port", str(port), "--device", args.device, "--log-level", "warning"])
        try:
            _wait_healthy(base, server)
            run_program(base)
        finally:
            server.terminate()
            server.wait(timeout=30)
        print("server stopped; demo done")


if __name__ == "__main__":
    main()
