"""Programs per second: compiled vs interpreted vs one-request-per-gen with the radix cache off.

    python benchmarks/frontend/bench_programs.py [--model-path M] [--device cpu] [--out FILE]

Two workloads with synthetic data: few-shot classification (a long constant few-shot prefix,
then `select` among labels) and tree-of-thought (nested forks with short gens). Each runs as a
`run_batch`, after a cache flush:
  * compiled     — `fn.compile()` on a server with the radix cache (hints, batch planning);
  * interpreted  — `fn.run_batch` on the same server;
  * baseline     — interpreted on a server started with `--disable-radix-cache`, fork hints off:
                   every request computes its whole prompt.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import sglang as sgl
from sglang.benchmark.result_file import result_header, write_result

LABELS = [" positive", " negative", " neutral"]
SHOTS = "".join(f"Review: {t} Sentiment:{l}\n" for t, l in [
    ("The food was wonderful and the staff were kind.", " positive"),
    ("Cold soup, rude waiter, never again.", " negative"),
    ("It was fine, nothing special either way.", " neutral"),
    ("Best pizza I have had in years, will return.", " positive"),
    ("We waited an hour and the order was wrong.", " negative"),
    ("Average prices, average taste, average service.", " neutral")] * 3)


@sgl.function
def classify(s, review):
    s += "Classify the sentiment of each review.\n" + SHOTS
    s += "Review: " + review + " Sentiment:" + sgl.select("label", choices=LABELS)


@sgl.function
def tree_of_thought(s, question):
    s += "Answer the question by exploring a few ideas before deciding.\nQuestion: " + question + "\n"
    ideas = s.fork(3)
    ideas += lambda i: f"Idea {i + 1}:" + sgl.gen("idea", max_tokens=8, stop="\n")
    for idea in ideas:
        checks = idea.fork(2)
        checks += lambda j: f"\nCheck {j + 1}:" + sgl.gen("check", max_tokens=8, stop="\n")
        checks.join()
    ideas.join()


def workloads(n_cls: int, n_tot: int) -> dict[str, tuple[Any, list[dict]]]:
    reviews = [{"review": f"Visit number {i}: the dessert was {['great', 'bad', 'ok'][i % 3]}."}
               for i in range(n_cls)]
    questions = [{"question": f"How can a small town number {i} reduce traffic?"}
                 for i in range(n_tot)]
    return {"few_shot_select": (classify, reviews), "tree_of_thought": (tree_of_thought, questions)}


def timed(backend: Any, fn: Callable[[], list]) -> tuple[float, int]:
    sgl.flush_cache(backend)
    before = backend.get_server_info()["prefill_tokens"]
    t0 = time.perf_counter()
    states = fn()
    elapsed = time.perf_counter() - t0
    errors = [s.error() for s in states if s.error() is not None]
    if errors:
        raise RuntimeError(f"{len(errors)} programs failed: {errors[0]}")
    return elapsed, backend.get_server_info()["prefill_tokens"] - before


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None, help="Model (default: the embedded tiny llama).")
    p.add_argument("--device", default="cpu")
    p.add_argument("--load-format", default=None, help="e.g. dummy (real-shape config, random weights).")
    p.add_argument("--max-total-tokens", type=int, default=None,
                   help="KV tokens per server; two servers share the device, so size both on a GPU.")
    p.add_argument("--num-classify", type=int, default=32)
    p.add_argument("--num-tree", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2, help="Runs per mode; the best is kept.")
    p.add_argument("--out", default=None, help="JSON results file.")
    args = p.parse_args()
    if args.model_path is None:
        from sglang.testing.fixtures import tiny_model_dir
        args.model_path = tiny_model_dir("llama")
    common = dict(model_path=args.model_path, device=args.device, random_seed=0)
    if args.load_format:
        common["load_format"] = args.load_format
    if args.max_total_tokens:
        common["max_total_tokens"] = args.max_total_tokens
    radix, no_radix = sgl.Runtime(**common), sgl.Runtime(disable_radix_cache=True, **common)
    results: dict[str, Any] = {}
    try:
        for name, (fn, batch) in workloads(args.num_classify, args.num_tree).items():
            compiled = fn.compile(backend=radix)
            modes = {
                "compiled": (radix, lambda: compiled.run_batch(batch, temperature=0)),
                "interpreted": (radix, lambda: fn.run_batch(batch, backend=radix, temperature=0)),
                "baseline_no_radix": (no_radix, lambda: fn.run_batch(batch, backend=no_radix,
                                                                     temperature=0)),
            }
            row: dict[str, Any] = {"programs": len(batch)}
            for mode, (backend, run) in modes.items():
                sgl.global_config.enable_fork_prefix_hint = mode != "baseline_no_radix"
                best = min((timed(backend, run) for _ in range(args.repeats)), key=lambda r: r[0])
                row[mode] = {"programs_per_s": round(len(batch) / best[0], 2),
                             "seconds": round(best[0], 3), "prefill_tokens": best[1]}
                print(f"{name:16s} {mode:18s} {row[mode]}")
            sgl.global_config.enable_fork_prefix_hint = True
            base = row["baseline_no_radix"]["programs_per_s"]
            row["compiled_vs_interpreted"] = round(row["compiled"]["programs_per_s"] / row["interpreted"]["programs_per_s"], 2)
            row["compiled_vs_baseline"] = round(row["compiled"]["programs_per_s"] / base, 2)
            row["interpreted_vs_baseline"] = round(row["interpreted"]["programs_per_s"] / base, 2)
            row["compiler_stats"] = compiled.stats
            results[name] = row
    finally:
        radix.shutdown()
        no_radix.shutdown()
    argv = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"]
    write_result({**result_header("benchmarks/frontend/bench_programs.py", args.device, argv), "results": results},
                 args.out)

if __name__ == "__main__":
    main()
