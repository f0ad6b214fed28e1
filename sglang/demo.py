"""The README's main job: build the embedded tiny model and generate with it.

    python -m sglang.demo [--arch llama] [--device cpu]

It writes a tiny random checkpoint (real BPE tokenizer, chat template) to a temporary folder,
starts the runtime on it and generates for a few prompts, streaming one of them. The weights are
random, so the text is gibberish; what it shows is the whole pipeline working end to end.
"""

from __future__ import annotations

import argparse
import tempfile


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="llama", help="Tiny model family: llama, mistral, qwen2, qwen3, gemma2.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda.")
    args = parser.parse_args(argv)

    import sglang
    from sglang.testing.tiny_model import make_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="sglang-demo-") as tmp:
        path = make_tiny_checkpoint(args.arch, tmp)
        print(f"tiny {args.arch} checkpoint written to {path}")
        with sglang.Engine(model_path=path, device=args.device) as engine:
            prompts = ["The capital of France is", "Once upon a time", "def fibonacci(n):"]
            outs = engine.generate(prompts, {"max_new_tokens": 16, "temperature": 0})
            for prompt, out in zip(prompts, outs):
                meta = out["meta_info"]
                print(f"{prompt!r} -> {out['text']!r} ({meta['completion_tokens']} tokens, "
                      f"finish {meta['finish_reason']})")
            print("streaming: ", end="", flush=True)
            for chunk in engine.generate("Hello there", {"max_new_tokens": 16, "temperature": 0.8, "seed": 1},
                                         stream=True):
                print(chunk["text"], end="", flush=True)
            print()
            again = engine.generate(prompts[0], {"max_new_tokens": 4, "temperature": 0})
            print(f"repeated prompt reused {again['meta_info']['cached_tokens']} cached tokens "
                  f"of {again['meta_info']['prompt_tokens']}")


if __name__ == "__main__":
    main()
