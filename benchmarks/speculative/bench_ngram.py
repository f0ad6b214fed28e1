"""NGRAM (or EAGLE) speculative decoding vs plain decoding on a copy-heavy workload.

    python benchmarks/speculative/bench_ngram.py --device cuda --out benchmarks/results/spec_ngram_h100.json
    python benchmarks/speculative/bench_ngram.py --algorithm EAGLE --draft-model-path HEAD_DIR ...

bs1: each prompt alone, streamed; ms/token is the decode time (first chunk to last) per token
after the first. bs32 (or --batch-sizes): all prompts submitted at once; output tokens per second
of wall time. Mean accepted length = tokens emitted per verify pass (accepted drafts + 1) from
meta_info. Both configurations run greedy with the same prompts in the same process, one engine
after the other; the outputs of the two are compared (greedy speculation must not change them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from copy_workload import chat_prompts  # noqa: E402


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None, help="default: the cached SmolLM2-135M-Instruct GGUF")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--num-prompts", type=int, default=8, help="bs1 prompts (run one at a time)")
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[32], help="batched runs besides bs1")
    p.add_argument("--num-draft-tokens", type=int, default=8, help="--speculative-num-draft-tokens")
    p.add_argument("--disable-batch-size", type=int, default=None,
                   help="--speculative-disable-batch-size (default: the server default)")
    p.add_argument("--algorithm", default="NGRAM", choices=["NGRAM", "EAGLE"])
    p.add_argument("--draft-model-path", default=None, help="EAGLE: the head (e.g. from fit_eagle_head.py)")
    p.add_argument("--eagle-topk", type=int, default=None)
    p.add_argument("--num-steps", type=int, default=None)
    p.add_argument("--extra", default="{}", help="JSON of extra Engine kwargs for both configurations")
    p.add_argument("--out", default=None, help="write the JSON result here")
    return p.parse_args(argv)


def _engine(args, spec: bool):
    import sglang

    kw = dict(model_path=args.model_path, device=args.device, dtype=args.dtype, random_seed=0, **json.loads(args.extra))
    if spec:
        kw.update(speculative_algorithm=args.algorithm, speculative_num_draft_tokens=args.num_draft_tokens)
        if args.algorithm == "EAGLE":
            kw.update(speculative_draft_model_path=args.draft_model_path, speculative_eagle_topk=args.eagle_topk,
                      speculative_num_steps=args.num_steps)
        if args.disable_batch_size is not None:
            kw["speculative_disable_batch_size"] = args.disable_batch_size
    return sglang.Engine(**kw)


def _params(args) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "temperature": 0}


def run_bs1(eng, prompts: List[str], params: dict) -> Dict:
    per_token, outputs, verify, accepted, tokens = [], [], 0, 0, 0
    for prompt in prompts:
        start = first = None
        ids: List[int] = []
        meta = {}
        start = time.perf_counter()
        for chunk in eng.generate(prompt, params, stream=True):
            if first is None:
                first = time.perf_counter()
            ids += chunk["output_ids"]
            meta = chunk["meta_info"]
        end = time.perf_counter()
        if len(ids) > 1:
            per_token.append((end - first) * 1000 / (len(ids) - 1))
        outputs.append(ids)
        verify += meta.get("spec_verify_ct", 0)
        accepted += meta.get("spec_accept_token_num", 0)
        tokens += len(ids)
        del start
    return {"ms_per_token_mean": statistics.mean(per_token), "ms_per_token_median": statistics.median(per_token),
            "output_tokens": tokens, "spec_verify_ct": verify, "spec_accept_token_num": accepted,
            "mean_accept_length": (accepted + verify) / verify if verify else None, "outputs": outputs}


def run_batch(eng, prompts: List[str], params: dict) -> Dict:
    start = time.perf_counter()
    outs = eng.generate(prompts, params)
    wall = time.perf_counter() - start
    tokens = sum(len(o["output_ids"]) for o in outs)
    verify = sum(o["meta_info"].get("spec_verify_ct", 0) for o in outs)
    accepted = sum(o["meta_info"].get("spec_accept_token_num", 0) for o in outs)
    return {"wall_s": wall, "output_tokens": tokens, "tokens_per_s": tokens / wall, "spec_verify_ct": verify,
            "spec_accept_token_num": accepted, "outputs": [o["output_ids"] for o in outs]}


def measure(args, spec: bool) -> Dict:
    with _engine(args, spec) as eng:
        params = _params(args)
        eng.generate(chat_prompts(eng.tokenizer, 1)[0], {**params, "max_new_tokens": 16})  # warm-up
        result = {"bs1": run_bs1(eng, chat_prompts(eng.tokenizer, args.num_prompts), params)}
        for bs in args.batch_sizes:
            prompts = chat_prompts(eng.tokenizer, bs)
            run_batch(eng, prompts, {**params, "max_new_tokens": 16})  # warm-up at this size
            result[f"bs{bs}"] = run_batch(eng, prompts, params)
        return result


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _device_name(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def summarize(off: Dict, on: Dict, algo: str = "NGRAM") -> Dict:
    name = algo.lower()
    summary = {}
    for key in off:
        same = off[key]["outputs"] == on[key]["outputs"]
        if key == "bs1":
            summary[key] = {"ms_per_token_off": off[key]["ms_per_token_mean"],
                            f"ms_per_token_{name}": on[key]["ms_per_token_mean"],
                            "speedup": off[key]["ms_per_token_mean"] / on[key]["ms_per_token_mean"],
                            "mean_accept_length": on[key]["mean_accept_length"], "greedy_outputs_identical": same}
        else:
            summary[key] = {"tokens_per_s_off": off[key]["tokens_per_s"], f"tokens_per_s_{name}": on[key]["tokens_per_s"],
                            "speedup": on[key]["tokens_per_s"] / off[key]["tokens_per_s"],
                            "spec_verify_ct": on[key]["spec_verify_ct"], "greedy_outputs_identical": same}
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.model_path is None:
        from sglang.testing.models import smollm2_gguf_path

        args.model_path = str(smollm2_gguf_path(fetch=False))
    off = measure(args, spec=False)
    on = measure(args, spec=True)
    result = {
        "benchmark": f"speculative_{args.algorithm.lower()}_copy_workload",
        "date": time.strftime("%Y-%m-%d"),
        "commit": _commit(),
        "device": _device_name(args.device),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "args": vars(args),
        "summary": summarize(off, on, args.algorithm),
        "off": {k: {kk: vv for kk, vv in v.items() if kk != "outputs"} for k, v in off.items()},
        args.algorithm.lower(): {k: {kk: vv for kk, vv in v.items() if kk != "outputs"} for k, v in on.items()},
    }
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
