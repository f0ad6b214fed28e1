"""What a speculative step costs against a decode step, at a real shape with dummy weights.

    PYTHONPATH=. python benchmarks/speculative/bench_verify_cost.py --model-path llama-3-8b \
        --load-format dummy --device cuda --batch-sizes 1 8 --input-len 512 [--out F]

For each batch size, after one prefill of random prompts (no caching), times in the same process:
- `decode`: a plain decode step (CUDA graphs as served);
- `verify_chain_k`: a verify pass of k + 1 rows per request (NGRAM / DRAFT layout) for each k;
- `verify_tree`: an EAGLE tree of --tree-nodes nodes per request on branch rows (topk-wide first
  level, the rest under its best node);
- `eagle_draft`: EAGLE drafting with a dummy EAGLE-1 head (--eagle-kind) of the target's shape:
  catch-up of one position, then --num-steps levels of --topk frontier rows.
Every pass writes KV into fresh slots that are freed after it, so requests stay where they are.
Acceptance needs real weights: this measures only what a step costs (issue 23's verify-step cost).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional

import torch

from sglang.bench_one_batch import BatchDriver, make_reqs, random_prompts
from sglang.benchmark.result_file import result_header, write_result
from sglang.runtime.model_executor.model_runner import ModelRunner
from sglang.runtime.server_args import ServerArgs
from sglang.runtime.speculative.eagle_tree import DraftTree
from sglang.runtime.speculative.tree_verify import ScratchRows, build_tree_verify
from sglang.runtime.managers.schedule_batch import build_rows_batch


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default="llama-3-8b", help="checkpoint dir or a sglang.testing.shapes name")
    p.add_argument("--load-format", default="dummy")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--input-len", type=int, default=512)
    p.add_argument("--chain-k", type=int, nargs="+", default=[1, 3, 7])
    p.add_argument("--tree-nodes", type=int, default=8, help="verified tokens per request in the tree case")
    p.add_argument("--topk", type=int, default=4)
    p.add_argument("--num-steps", type=int, default=5)
    p.add_argument("--eagle-kind", default="eagle", choices=["eagle", "eagle3", "none"])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def resolve_model(path: str) -> str:
    if os.path.isdir(path):
        return path
    from sglang.testing.fixtures import shape_model_dir

    return shape_model_dir(path)


def timed_ms(fn: Callable[[], None], device: str, repeats: int) -> float:
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 3)


def demo_tree(root: int, nodes: int, topk: int, vocab: int) -> DraftTree:
    """root -> topk children; the remaining nodes chained under the first child."""
    first = min(topk, nodes - 1)
    tokens, parents = [root], [-1]
    for i in range(first):
        tokens.append((root + 1 + i) % vocab)
        parents.append(0)
    prev = 1
    for i in range(nodes - 1 - first):
        tokens.append((root + 100 + i) % vocab)
        parents.append(prev)
        prev = len(tokens) - 1
    return DraftTree(tokens, parents)


def measure(args, bs: int, model: str, head: Optional[str]) -> Dict[str, float]:
    spec = {}
    if head is not None:
        spec = dict(speculative_algorithm="EAGLE", speculative_draft_model_path=head, speculative_eagle_topk=args.topk,
                    speculative_num_steps=args.num_steps, speculative_num_draft_tokens=args.tree_nodes,
                    speculative_disable_batch_size=max(bs, 1))
    server_args = ServerArgs(model_path=model, load_format=args.load_format, device=args.device, dtype=args.dtype,
                             max_running_requests=max(bs, 8), context_length=args.input_len + 256, **spec)
    runner = ModelRunner(server_args)
    driver = BatchDriver(runner)
    reqs = make_reqs(random_prompts(bs, args.input_len, runner.vocab_size(), 0), 64)
    driver.prefill(reqs)
    res = driver.res
    out: Dict[str, float] = {"decode": timed_ms(lambda: _decode_and_undo(driver, reqs), args.device, args.repeats)}

    def rows_pass(k: int) -> None:
        fb = build_rows_batch(reqs, [[r.output_ids[-1]] * (k + 1) for r in reqs], res)
        runner.forward(fb)
        runner.allocator.free(fb.out_cache_loc.to("cpu"))

    for k in args.chain_k:
        out[f"verify_chain_{k}"] = timed_ms(lambda: rows_pass(k), args.device, args.repeats)
    scratch = ScratchRows(runner.req_to_token_pool, bs, max(args.tree_nodes, args.topk))
    trees = [demo_tree(r.output_ids[-1], args.tree_nodes, args.topk, runner.vocab_size()) for r in reqs]

    def tree_pass() -> None:
        blocks = scratch.prepare(reqs)
        fb, slots = build_tree_verify(reqs, trees, blocks, res)
        runner.forward(fb)
        runner.allocator.free(torch.cat(slots))

    out["verify_tree"] = timed_ms(tree_pass, args.device, args.repeats)
    if head is not None:
        from sglang.runtime.speculative.eagle_draft import EagleDrafter

        drafter = EagleDrafter(server_args, runner)
        drafter.bind_cache(driver.cache)
        rooms = [args.num_steps] * bs
        out["eagle_draft"] = timed_ms(lambda: drafter.draft(reqs, rooms, scratch.prepare(reqs)), args.device,
                                      args.repeats)
    driver.release(reqs)
    return out


def _decode_and_undo(driver: BatchDriver, reqs) -> None:
    """One decode step, then the request state put back (its slot freed, the token dropped)."""
    driver.decode(reqs)
    for req in reqs:
        req.kv_committed_len -= 1
        driver.runner.allocator.free(driver.runner.req_to_token_pool.read(req.req_pool_idx, req.kv_committed_len,
                                                                         req.kv_committed_len + 1))
        req.output_ids.pop()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    model = resolve_model(args.model_path)
    head = None
    if args.eagle_kind != "none":
        from sglang.testing.tiny_eagle import write_eagle_config

        head = write_eagle_config(model, tempfile.mkdtemp(prefix="eagle-head-"), args.eagle_kind)
    record = result_header("benchmarks/speculative/bench_verify_cost.py", args.device, argv)
    record.update({"model": args.model_path, "input_len": args.input_len, "tree_nodes": args.tree_nodes,
                   "topk": args.topk, "num_steps": args.num_steps, "eagle_kind": args.eagle_kind, "unit": "ms",
                   "results": {}})
    for bs in args.batch_sizes:
        row = measure(args, bs, model, head)
        row.update({k.replace("verify", "ratio_verify") + "_vs_decode": round(v / row["decode"], 3)
                    for k, v in list(row.items()) if k.startswith("verify")})
        record["results"][f"bs{bs}"] = row
        print(f"bs{bs}: {row}", flush=True)
    write_result(record, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
