"""`chunked_prefill_size` bounds every extend batch; chunking never changes greedy outputs.

Outputs alone cannot tell whether chunking happened (a scheduler that ignores the option gives the
same tokens), so these tests read the forward passes the harness recorded.
"""

from __future__ import annotations

import random

from sglang.testing.scheduler_harness import SchedulerHarness

CHUNK = 7
GREEDY = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}


def _run(llama_path: str, prompts: dict, **overrides):
    h = SchedulerHarness(llama_path, **overrides)
    for rid, ids in prompts.items():
        h.submit(rid, input_ids=ids, params=GREEDY)
    results = h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
    return {rid: r.output_ids for rid, r in results.items()}, h


def test_fifty_token_prompt_is_prefilled_in_chunks_of_seven(llama_path):
    rng = random.Random(0)
    prompt = {"long": [rng.randrange(3, 900) for _ in range(50)]}
    chunked, h = _run(llama_path, prompt, chunked_prefill_size=CHUNK)
    extends = [f.num_tokens for f in h.extend_forwards()]
    assert len(extends) >= 8  # ceil(50 / 7)
    assert extends == [CHUNK] * 7 + [1]
    whole, h_whole = _run(llama_path, prompt, chunked_prefill_size=-1)
    assert [f.num_tokens for f in h_whole.extend_forwards()] == [50]
    assert chunked == whole


def test_no_extend_batch_exceeds_the_chunk_size(llama_path, llama_prompts):
    prompts = {str(i): ids for i, ids in enumerate(llama_prompts)}
    chunked, h = _run(llama_path, prompts, chunked_prefill_size=CHUNK)
    sizes = [f.num_tokens for f in h.extend_forwards()]
    assert max(sizes) == CHUNK, sizes
    assert all(sum(f.extend_seq_lens) == f.num_tokens for f in h.extend_forwards())
    whole, _ = _run(llama_path, prompts)
    assert chunked == whole
