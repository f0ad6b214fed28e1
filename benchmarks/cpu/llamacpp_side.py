"""llama.cpp's side of the CPU comparison, through llama-cpp-python (one sequence at a time).

Greedy is temperature 0 with top_k 1; penalties are off (repeat_penalty 1). Its prompt cache is
llama.cpp's own: a prompt reuses the longest prefix it shares with the previous one, which is
what a llama.cpp user gets, so it is left on; `reset()` drops it where a measure needs a cold
prompt (time to first token).
"""

from __future__ import annotations

import time
from typing import Dict, List, Sequence


class LlamaCppSide:
    name = "llama.cpp"

    def __init__(self, gguf_path: str, threads: int, n_ctx: int = 2048):
        import llama_cpp

        self.version = llama_cpp.__version__
        self.llm = llama_cpp.Llama(model_path=gguf_path, n_threads=threads, n_threads_batch=threads, n_ctx=n_ctx,
                                   n_batch=512, verbose=False)

    def _complete(self, ids: Sequence[int], max_new_tokens: int) -> dict:
        return self.llm.create_completion(prompt=list(ids), max_tokens=max_new_tokens, temperature=0.0, top_k=1,
                                          top_p=1.0, min_p=0.0, repeat_penalty=1.0)

    def warm_up(self, ids: Sequence[int]) -> None:
        self._complete(ids, 4)

    def sequential(self, prompts: List[List[int]], max_new_tokens: int) -> Dict[str, float]:
        """The prompts one after another: output tokens over the wall time of all of them."""
        self.llm.reset()
        tokens, texts = 0, []
        start = time.perf_counter()
        for ids in prompts:
            out = self._complete(ids, max_new_tokens)
            tokens += out["usage"]["completion_tokens"]
            texts.append(out["choices"][0]["text"])
        elapsed = time.perf_counter() - start
        return {"output_tokens": tokens, "elapsed_s": elapsed, "output_tok_s": tokens / elapsed,
                "texts": texts}

    def time_to_first_token(self, ids: Sequence[int]) -> float:
        """Seconds for a cold prompt's prefill plus its first sampled token."""
        self.llm.reset()
        start = time.perf_counter()
        self._complete(ids, 1)
        return time.perf_counter() - start

    def close(self) -> None:
        self.llm.close()
