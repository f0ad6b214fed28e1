"""One serving benchmark run: ask the server what it serves, synthesize the dataset, warm up,
optionally flush the prefix cache, send the load, and summarize.

`run_benchmark(args)` takes the namespace of `python -m sglang.bench_serving` and returns the
metrics dict (also appended as one JSON line to --output-file when given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import datetime, timezone
from typing import Dict, List, Optional

import httpx

from sglang.benchmark.datasets import BenchRequest, random_requests, shared_prefix_requests
from sglang.benchmark.load_generator import run_load
from sglang.benchmark.request_record import RequestInput, RequestOutput
from sglang.benchmark.serving_clients import get_backend, send_request
from sglang.benchmark.serving_metrics import finalize_output, format_table, per_request_details, summarize

_CONNECT_TIMEOUT_S = 30.0


def base_url_of(args: argparse.Namespace) -> str:
    return (args.base_url or f"http://{args.host}:{args.port}").rstrip("/")


def auth_headers() -> Dict[str, str]:
    """Bearer key from OPENAI_API_KEY (as upstream), for servers started with --api-key."""
    key = os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def fetch_model_info(base_url: str) -> dict:
    try:
        resp = httpx.get(f"{base_url}/get_model_info", headers=auth_headers(), timeout=_CONNECT_TIMEOUT_S)
        resp.raise_for_status()
    except httpx.HTTPError as e:
        raise RuntimeError(f"cannot read {base_url}/get_model_info ({e}); is the server up? "
                           "Pass --base-url or --host/--port, or --tokenizer and --model to skip this") from e
    return resp.json()


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    from sglang.runtime.models.gguf.files import pretrained_source

    source, gguf_kwargs = pretrained_source(path)  # a GGUF file carries its tokenizer
    try:
        return AutoTokenizer.from_pretrained(source, **gguf_kwargs)
    except Exception as e:
        raise RuntimeError(f"cannot load a tokenizer from {path!r} ({e}); pass --tokenizer DIR") from e


def served_model_name(base_url: str, fallback: str) -> str:
    """The first id of /v1/models (what OpenAI routes expect), else `fallback`."""
    try:
        resp = httpx.get(f"{base_url}/v1/models", headers=auth_headers(), timeout=_CONNECT_TIMEOUT_S)
        resp.raise_for_status()
        return resp.json()["data"][0]["id"]
    except (httpx.HTTPError, KeyError, IndexError, ValueError):
        return fallback


def build_dataset(args: argparse.Namespace, tokenizer) -> List[BenchRequest]:
    vocab = len(tokenizer)
    if args.dataset_name == "generated-shared-prefix":
        return shared_prefix_requests(tokenizer, vocab, args.gsp_num_groups, args.gsp_prompts_per_group,
                                      args.gsp_system_prompt_len, args.gsp_question_len, args.gsp_output_len,
                                      seed=args.seed, as_text=True)
    if args.dataset_name in ("random", "random-ids"):
        return random_requests(tokenizer, vocab, args.num_prompts, args.random_input_len, args.random_output_len,
                               args.random_range_ratio, seed=args.seed, as_text=args.dataset_name == "random")
    raise ValueError(f"unknown --dataset-name {args.dataset_name!r}; use random, random-ids or generated-shared-prefix")


def to_inputs(reqs: List[BenchRequest], args: argparse.Namespace, model: str, tokenizer) -> List[RequestInput]:
    extra = json.loads(args.extra_request_body) if args.extra_request_body else {}
    out = []
    for r in reqs:
        prompt = r.text if r.text is not None else r.input_ids
        if args.backend == "openai-chat" and not isinstance(prompt, str):
            prompt = tokenizer.decode(prompt)  # chat messages are text
        out.append(RequestInput(prompt, len(r.input_ids), r.output_len, model, not args.disable_ignore_eos, extra))
    return out


async def _run_async(args: argparse.Namespace, base_url: str, inputs: List[RequestInput]):
    backend = get_backend(args.backend)
    headers = auth_headers()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(None, connect=_CONNECT_TIMEOUT_S)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        for req in inputs[: args.warmup_requests]:
            warm = await send_request(client, base_url, backend, req, headers)
            if not warm.success:
                raise RuntimeError(f"warm-up request failed, so the benchmark would too: {warm.error}")
        if args.flush_cache:
            resp = await client.post(f"{base_url}/flush_cache", headers=headers)
            if resp.status_code != 200:
                raise RuntimeError(f"/flush_cache answered HTTP {resp.status_code}: {resp.text[:200]}")

        async def send(req: RequestInput) -> RequestOutput:
            return await send_request(client, base_url, backend, req, headers)

        return await run_load(inputs, send, args.request_rate, args.max_concurrency, args.seed,
                              not args.disable_tqdm)


def run_benchmark(args: argparse.Namespace) -> dict:
    """Run the benchmark described by `args`; print the table and return the metrics dict."""
    base_url = base_url_of(args)
    info: Optional[dict] = None
    if args.tokenizer is None or (args.model is None and args.backend != "sglang"):
        info = fetch_model_info(base_url)
    tokenizer = load_tokenizer(args.tokenizer or info.get("tokenizer_path") or info["model_path"])
    model = args.model or (served_model_name(base_url, info["model_path"]) if args.backend != "sglang" else "")
    inputs = to_inputs(build_dataset(args, tokenizer), args, model, tokenizer)
    outputs, duration = asyncio.run(_run_async(args, base_url, inputs))
    for out in outputs:
        finalize_output(out, lambda text: len(tokenizer.encode(text, add_special_tokens=False)))
    metrics = summarize(outputs, duration)
    header = {"Backend": args.backend, "Dataset": args.dataset_name, "Traffic request rate": args.request_rate,
              "Max request concurrency": args.max_concurrency or "not set"}
    print(format_table(metrics, header))
    if metrics["failed"]:
        print(f"{metrics['failed']} request(s) failed; the first error: {metrics['first_error']}")
    record = {**_run_config(args, base_url, model, len(inputs)), **metrics}
    if args.output_file:
        _append_json_line(args.output_file, record, per_request_details(outputs) if args.output_details else {})
    record["details"] = per_request_details(outputs)
    return record


def _run_config(args: argparse.Namespace, base_url: str, model: str, num_prompts: int) -> dict:
    return {"backend": args.backend, "base_url": base_url, "model": model, "dataset_name": args.dataset_name,
            "num_prompts": num_prompts, "request_rate": args.request_rate,
            "max_concurrency": args.max_concurrency, "seed": args.seed,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _append_json_line(path: str, record: dict, details: dict) -> None:
    safe = {k: (str(v) if isinstance(v, float) and v in (float("inf"), float("-inf")) else v)
            for k, v in {**record, **details}.items()}
    with open(path, "a") as f:
        f.write(json.dumps(safe) + "\n")
