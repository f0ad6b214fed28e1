"""Our side of the CPU comparison: `sglang.Engine` on the same GGUF, end to end (tokenizer manager,
scheduler and detokenizer processes, as a user of the Engine gets them).

Prompts go in as token ids, greedy (temperature 0), stop at the model's end-of-turn ids. The
radix cache is flushed before each timed run, so every run starts as cold as llama.cpp's
(whose own prompt cache keeps only the previous prompt's prefix).
"""

from __future__ import annotations

import time
from typing import Dict, List, Sequence

GREEDY = {"temperature": 0.0}


class OursSide:
    name = "sglang"

    def __init__(self, gguf_path: str, server_args: Dict):
        from sglang.runtime.entrypoints.engine import Engine
        from sglang.runtime.server_args import ServerArgs

        args = {"model_path": gguf_path, "device": "cpu", "random_seed": 0, "log_level": "warning",
                "context_length": 2048, **server_args}
        self.server_args = ServerArgs(**args)
        start = time.perf_counter()
        self.engine = Engine(server_args=self.server_args)
        self.startup_s = time.perf_counter() - start

    def _params(self, max_new_tokens: int) -> dict:
        return {**GREEDY, "max_new_tokens": max_new_tokens}

    def warm_up(self, prompts: List[List[int]], max_new_tokens: int) -> None:
        """One request alone and one batch, so lazy initialisation (and compilation, where a lever
        compiles) happens before anything is timed."""
        self.engine.generate(input_ids=prompts[0], sampling_params=self._params(max_new_tokens))
        self.engine.generate(input_ids=prompts, sampling_params=self._params(max_new_tokens))

    def sequential(self, prompts: List[List[int]], max_new_tokens: int) -> Dict[str, float]:
        self.engine.flush_cache()
        tokens, texts = 0, []
        start = time.perf_counter()
        for ids in prompts:
            out = self.engine.generate(input_ids=ids, sampling_params=self._params(max_new_tokens))
            tokens += out["meta_info"]["completion_tokens"]
            texts.append(out["text"])
        elapsed = time.perf_counter() - start
        return {"output_tokens": tokens, "elapsed_s": elapsed, "output_tok_s": tokens / elapsed,
                "texts": texts}

    def batch(self, prompts: List[List[int]], max_new_tokens: int) -> Dict[str, float]:
        """All prompts submitted at once: output tokens over the wall time until the last finishes."""
        self.engine.flush_cache()
        start = time.perf_counter()
        outs = self.engine.generate(input_ids=prompts, sampling_params=self._params(max_new_tokens))
        elapsed = time.perf_counter() - start
        tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
        return {"output_tokens": tokens, "elapsed_s": elapsed, "output_tok_s": tokens / elapsed}

    def time_to_first_token(self, ids: Sequence[int]) -> float:
        """Seconds from submitting a cold prompt until its first token comes back."""
        self.engine.flush_cache()
        start = time.perf_counter()
        self.engine.generate(input_ids=list(ids), sampling_params=self._params(1))
        return time.perf_counter() - start

    def close(self) -> None:
        self.engine.shutdown()
