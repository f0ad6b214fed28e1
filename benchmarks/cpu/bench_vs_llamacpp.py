"""Our Engine against llama.cpp on a CPU: the same GGUF, the same chat prompts, greedy, N threads.

    python benchmarks/cpu/bench_vs_llamacpp.py --label baseline \
        --step "fp32=--dtype float32" --step "bf16=--dtype bfloat16"

Measures, each the median of --repeats runs:
- single stream: output tok/s of --num-prompts chat requests one after another (both sides);
- batch: the first B prompts (--batch-sizes) submitted at once to our Engine, against the same
  prompts through llama.cpp one after another (llama-cpp-python serves one sequence at a time);
- time to first token of a cold --ttft-prompt-len-token prompt.

llama.cpp runs once; our Engine runs once per --step ("LABEL=ARGS": server flags as on the
command line, plus NAME=VALUE environment settings for that step's processes), so each lever is
measured against llama.cpp's numbers from the same run. The machine's memory bandwidth is
measured in the same run too. The JSON goes to
benchmarks/results/cpu_vs_llamacpp_<date>_<label>.json unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shlex
import statistics
import sys
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from chat_prompts import chat_prompts, long_prompt
from llamacpp_side import LlamaCppSide
from machine_info import cpu_description, memory_bandwidth
from ours_side import OursSide

from sglang.benchmark.result_file import result_header, write_result
from sglang.runtime.server_args import ServerArgs

MEASURES = ("single", "batch", "ttft")
RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "results")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", default=None, help="GGUF file (default: the cached SmolLM2-135M-Instruct)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads (ours: see --step env settings)")
    p.add_argument("--num-prompts", type=int, default=16, help="chat requests in the single-stream measure")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[16, 64])
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--ttft-prompt-len", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="runs per measure; the median is reported")
    p.add_argument("--measures", nargs="+", choices=MEASURES, default=list(MEASURES))
    p.add_argument("--sides", nargs="+", choices=("llamacpp", "ours"), default=["llamacpp", "ours"])
    p.add_argument("--step", action="append", default=None,
                   help="LABEL=ARGS for one run of our Engine (repeatable; default: 'default=' )")
    p.add_argument("--skip-llamacpp-batches", action="store_true",
                   help="compare batches with llama.cpp's single-stream rate instead of re-running it on each batch's prompts")
    p.add_argument("--label", default="run")
    p.add_argument("--out", default=None, help="result path (default: benchmarks/results/cpu_vs_llamacpp_<date>_<label>.json)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- steps


def parse_step(spec: str, gguf: str) -> Tuple[str, Dict, Dict[str, str]]:
    """'LABEL=--flag v NAME=VALUE' -> (label, ServerArgs overrides, environment overrides)."""
    label, _, rest = spec.partition("=")
    env, flags = {}, []
    for token in shlex.split(rest):
        name, eq, value = token.partition("=")
        if eq and not token.startswith("-") and name.isupper():
            env[name] = value
        else:
            flags.append(token)
    parser = argparse.ArgumentParser(prog=f"--step {label}")
    ServerArgs.add_cli_args(parser)
    given = vars(parser.parse_args(["--model-path", gguf, *flags]))
    defaults = vars(parser.parse_args(["--model-path", gguf]))
    overrides = {k: v for k, v in given.items() if v != defaults[k]}
    return label or "default", overrides, env


@contextlib.contextmanager
def environment(env: Dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------- measuring


def repeated(fn: Callable[[], Dict], repeats: int, key: str) -> Dict:
    runs = [fn() for _ in range(repeats)]
    values = [r[key] for r in runs]
    return {key: round(statistics.median(values), 2), "runs": [round(v, 3) for v in values],
            "output_tokens": [r.get("output_tokens") for r in runs],
            **({"texts": runs[0]["texts"]} if "texts" in runs[0] else {})}


def repeated_ttft(fn: Callable[[], float], repeats: int) -> Dict:
    runs = [fn() for _ in range(repeats)]
    return {"ttft_s": round(statistics.median(runs), 4), "runs": [round(v, 4) for v in runs]}


def single_stream(args, side, prompts) -> Dict:
    """--num-prompts requests one after another (either side)."""
    return repeated(lambda: side.sequential(prompts[: args.num_prompts], args.max_new_tokens), args.repeats,
                    "output_tok_s")


def ttft_measure(args, side, long_ids) -> Dict:
    """The time-to-first-token measure when asked for (either side)."""
    if "ttft" not in args.measures:
        return {}
    return {f"ttft_{args.ttft_prompt_len}": repeated_ttft(lambda: side.time_to_first_token(long_ids),
                                                          max(args.repeats, 5))}


def measure_llamacpp(args, prompts, long_ids) -> Dict:
    side = LlamaCppSide(args.gguf, args.threads)
    try:
        side.warm_up(prompts[0])
        out: Dict = {"version": side.version, "threads": args.threads}
        if "single" in args.measures:
            out["single"] = single_stream(args, side, prompts)
        if "batch" in args.measures and not args.skip_llamacpp_batches:
            for bs in args.batch_sizes:
                if bs != args.num_prompts or "single" not in out:
                    out[f"sequential_{bs}"] = repeated(
                        lambda: side.sequential(prompts[:bs], args.max_new_tokens), args.repeats, "output_tok_s")
        out.update(ttft_measure(args, side, long_ids))
        return out
    finally:
        side.close()


def measure_ours(args, label, overrides, env, prompts, long_ids) -> Dict:
    with environment(env):
        side = OursSide(args.gguf, overrides)
    try:
        side.warm_up(prompts[: max(args.batch_sizes or [1])], args.max_new_tokens)
        out: Dict = {"label": label, "server_args": overrides, "env": env, "startup_s": round(side.startup_s, 1)}
        if "single" in args.measures:
            out["single"] = single_stream(args, side, prompts)
        if "batch" in args.measures:
            for bs in args.batch_sizes:
                out[f"batch_{bs}"] = repeated(lambda: side.batch(prompts[:bs], args.max_new_tokens), args.repeats,
                                              "output_tok_s")
        out.update(ttft_measure(args, side, long_ids))
        return out
    finally:
        side.close()


def ratios(step: Dict, llama: Dict, args) -> Dict[str, float]:
    """Our numbers over llama.cpp's: throughput ratios (higher is better) and TTFT ratio (lower is better)."""
    out: Dict[str, float] = {}
    single = llama.get("single", {}).get("output_tok_s")
    if single and "single" in step:
        out["single_over_llamacpp_single"] = round(step["single"]["output_tok_s"] / single, 2)
    for bs in args.batch_sizes:
        ours = step.get(f"batch_{bs}")
        seq = llama.get(f"sequential_{bs}", {}).get("output_tok_s")
        if ours and seq:
            out[f"batch_{bs}_over_llamacpp_sequential_{bs}"] = round(ours["output_tok_s"] / seq, 2)
        if ours and single:
            out[f"batch_{bs}_over_llamacpp_single"] = round(ours["output_tok_s"] / single, 2)
    key = f"ttft_{args.ttft_prompt_len}"
    if key in step and key in llama:
        out[f"{key}_ours_over_llamacpp"] = round(step[key]["ttft_s"] / llama[key]["ttft_s"], 2)
    return out


def agreement(step: Dict, llama: Dict) -> Optional[str]:
    ours, theirs = step.get("single", {}).get("texts"), llama.get("single", {}).get("texts")
    if not ours or not theirs:
        return None
    return f"{sum(a == b for a, b in zip(ours, theirs))}/{len(ours)} single-stream answers identical to llama.cpp's"


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.gguf is None:
        from sglang.testing.models import smollm2_gguf_path

        args.gguf = str(smollm2_gguf_path(fetch=False))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf))
    prompts = chat_prompts(tokenizer, max([args.num_prompts, *args.batch_sizes]))
    long_ids = long_prompt(tokenizer, args.ttft_prompt_len)
    record = {**result_header("benchmarks/cpu/bench_vs_llamacpp.py", "cpu", sys.argv[1:] if argv is None else argv),
              "label": args.label, "machine": cpu_description(), "gguf": os.path.basename(args.gguf),
              "settings": {"num_prompts": args.num_prompts, "batch_sizes": args.batch_sizes,
                           "max_new_tokens": args.max_new_tokens, "ttft_prompt_len": args.ttft_prompt_len,
                           "repeats": args.repeats, "threads": args.threads, "greedy": True},
              "bandwidth": memory_bandwidth(args.threads)}
    llama: Dict = measure_llamacpp(args, prompts, long_ids) if "llamacpp" in args.sides else {}
    record["llamacpp"] = llama
    record["steps"] = []
    if "ours" in args.sides:
        for spec in args.step or ["default="]:
            label, overrides, env = parse_step(spec, args.gguf)
            print(f"[bench] step {label}: {overrides} {env}", file=sys.stderr, flush=True)
            step = measure_ours(args, label, overrides, env, prompts, long_ids)
            step["vs_llamacpp"] = ratios(step, llama, args)
            step["agreement"] = agreement(step, llama)
            record["steps"].append(step)
            print(f"[bench] {label}: {step['vs_llamacpp']}", file=sys.stderr, flush=True)
    record["machine"]["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    out = args.out or os.path.join(RESULTS_DIR, f"cpu_vs_llamacpp_{datetime.date.today().isoformat()}_{args.label}.json")
    write_result(record, os.path.normpath(out))


if __name__ == "__main__":
    main()
