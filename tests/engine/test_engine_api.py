"""The offline Engine end to end: subprocesses, ZMQ, detokenizer, tokenizer manager."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

import sglang
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.hf_reference import hf_prompt_logprobs
from sglang.testing.stop_strings import straddling_stop

GREEDY = {"max_new_tokens": 12, "temperature": 0}


@pytest.fixture(scope="module")
def engine():
    with sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu", random_seed=0) as eng:
        yield eng


def test_generate_single_and_batch_shapes(engine):
    out = engine.generate("Once upon a time", GREEDY)
    assert isinstance(out["text"], str) and len(out["output_ids"]) == out["meta_info"]["completion_tokens"]
    meta = out["meta_info"]
    for key in ("id", "prompt_tokens", "completion_tokens", "cached_tokens", "finish_reason", "e2e_latency"):
        assert key in meta
    assert meta["prompt_tokens"] == len(engine.tokenizer.encode("Once upon a time"))
    outs = engine.generate(["Hello", "The quick brown fox"], GREEDY)
    assert isinstance(outs, list) and len(outs) == 2
    assert outs[0]["output_ids"] == engine.generate("Hello", GREEDY)["output_ids"]
    ids_out = engine.generate(input_ids=engine.tokenizer.encode("Hello"), sampling_params=GREEDY)
    assert ids_out["output_ids"] == outs[0]["output_ids"]


def test_stream_chunks_concatenate_to_the_full_result(engine):
    full = engine.generate("The garden was", GREEDY)
    chunks = list(engine.generate("The garden was", GREEDY, stream=True))
    assert len(chunks) > 1
    assert "".join(c["text"] for c in chunks) == full["text"]
    assert sum((c["output_ids"] for c in chunks), []) == full["output_ids"]
    assert chunks[-1]["meta_info"]["finish_reason"] == full["meta_info"]["finish_reason"]


def test_async_generate_and_async_stream(engine):
    async def main():
        full = await engine.async_generate("Le café", GREEDY)
        pieces = []
        async for chunk in await engine.async_generate("Le café", GREEDY, stream=True):
            pieces.append(chunk["text"])
        many = await asyncio.gather(*[engine.async_generate("Le café", GREEDY) for _ in range(4)])
        return full, pieces, many

    full, pieces, many = asyncio.run(main())
    assert "".join(pieces) == full["text"]
    assert all(m["text"] == full["text"] for m in many)


def test_prompt_logprobs_match_transformers(engine):
    text = "The quick brown fox jumps over the lazy dog."
    out = engine.generate(text, {"max_new_tokens": 2, "temperature": 0}, return_logprob=True, logprob_start_len=0,
                          top_logprobs_num=3, token_ids_logprob=[5, 7])
    meta = out["meta_info"]
    ids = engine.tokenizer.encode(text)
    entries = meta["input_token_logprobs"]
    assert [e[1] for e in entries] == ids and entries[0][0] is None
    ref = hf_prompt_logprobs(tiny_model_dir("llama"), ids)
    assert max(abs(e[0] - r) for e, r in zip(entries[1:], ref)) < 2e-4
    assert len(meta["output_token_logprobs"]) == 2
    assert [e[1] for e in meta["output_token_logprobs"]] == out["output_ids"]
    assert all(len(t) == 3 for t in meta["output_top_logprobs"])
    # greedy token is the top-1 entry
    assert all(t[0][1] == e[1] for t, e in zip(meta["output_top_logprobs"], meta["output_token_logprobs"]))
    assert all([x[1] for x in row] == [5, 7] for row in meta["output_token_ids_logprobs"])


def test_stop_string_is_trimmed_unless_no_stop_trim(engine):
    base = engine.generate("Once upon a time", {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True})
    text = base["text"]
    assert len(text) > 4
    stop = text[2:4]
    cut = engine.generate("Once upon a time", {"max_new_tokens": 16, "temperature": 0, "stop": stop})
    assert cut["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert cut["text"] == text[: text.index(stop)]
    kept = engine.generate("Once upon a time", {"max_new_tokens": 16, "temperature": 0, "stop": stop,
                                                "no_stop_trim": True})
    assert kept["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    # Untrimmed: the output runs to the end of the token that completed the stop string.
    completing = next(k for k in range(1, 17) if stop in engine.tokenizer.decode(base["output_ids"][:k]))
    assert kept["output_ids"] == base["output_ids"][:completing]
    assert kept["text"] == engine.tokenizer.decode(base["output_ids"][:completing])


def test_stop_string_straddling_two_tokens(engine):
    """A stop string that starts inside one token and ends inside the next is still found, and
    trimmed both from the whole result and from the stream."""
    prompt = "Once upon a time"
    base = engine.generate(prompt, {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True})
    straddle = straddling_stop(engine.tokenizer, base["output_ids"])
    assert base["text"].startswith(straddle.text_before + straddle.stop)
    params = {"max_new_tokens": 16, "temperature": 0, "ignore_eos": True, "stop": straddle.stop}
    out = engine.generate(prompt, params)
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": straddle.stop}
    assert out["output_ids"] == base["output_ids"][: straddle.completing_token + 1]
    assert out["text"] == straddle.text_before
    chunks = list(engine.generate(prompt, params, stream=True))
    assert "".join(c["text"] for c in chunks) == straddle.text_before
    assert chunks[-1]["meta_info"]["finish_reason"] == {"type": "stop", "matched": straddle.stop}


def test_stop_token_ids(engine):
    base = engine.generate("Hello", {"max_new_tokens": 8, "temperature": 0, "ignore_eos": True})
    stop_id = base["output_ids"][3]
    out = engine.generate("Hello", {"max_new_tokens": 8, "temperature": 0, "stop_token_ids": [stop_id]})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_id}
    assert out["output_ids"][-1] == stop_id and len(out["output_ids"]) <= 4


def test_seeded_sampling_is_reproducible(engine):
    params = {"max_new_tokens": 12, "temperature": 1.0, "seed": 1234}
    a = engine.generate("Once upon a time", params)
    b = engine.generate(["x y z", "Once upon a time"], [params, params])[1]
    c = engine.generate("Once upon a time", {**params, "seed": 999})
    assert a["output_ids"] == b["output_ids"]
    assert a["output_ids"] != c["output_ids"]


def test_n_samples_share_the_prompt(engine):
    prompt = "Once upon a time, in a small village by the sea, there lived an old fisherman"
    before = engine.get_server_info()["prefill_tokens"]
    outs = engine.generate(prompt, {"max_new_tokens": 4, "temperature": 1.0, "n": 4, "seed": 7})
    after = engine.get_server_info()["prefill_tokens"]
    n_prompt = len(engine.tokenizer.encode(prompt))
    assert isinstance(outs, list) and len(outs) == 4
    assert all(o["meta_info"]["cached_tokens"] >= n_prompt - 1 for o in outs)
    assert after - before <= n_prompt + 4  # the prompt once, then one token per sample
    assert len({tuple(o["output_ids"]) for o in outs}) > 1


def test_repeated_long_prompt_is_cached(engine):
    prompt = "The quick brown fox jumps over the lazy dog. " * 6
    engine.generate(prompt, GREEDY)
    again = engine.generate(prompt, GREEDY)
    assert again["meta_info"]["cached_tokens"] >= again["meta_info"]["prompt_tokens"] - 1


@pytest.mark.parametrize("params", [
    {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": 0}, {"min_p": 2}, {"max_new_tokens": -1},
    {"frequency_penalty": 3}, {"presence_penalty": -3}, {"repetition_penalty": 0}, {"n": 0},
    {"min_new_tokens": 50, "max_new_tokens": 5}, {"logit_bias": {"999999": 1.0}}, {"stop_token_ids": [-1]},
    {"unknown_param": 1}, {"temperature": "hot"}, {"seed": "x"},
])
def test_invalid_sampling_params_raise_and_engine_keeps_serving(engine, params):
    with pytest.raises(ValueError) as info:
        engine.generate("Hello", params)
    assert str(info.value)
    assert engine.generate("Hello", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2


def test_prompt_longer_than_context_is_rejected(engine):
    ctx = engine.get_server_info()["context_length"]
    with pytest.raises(ValueError, match="context length"):
        engine.generate(input_ids=[5] * (ctx + 10), sampling_params=GREEDY)
    assert engine.generate("Hello", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2


def test_memory_returns_to_idle_baseline(engine):
    engine.generate(["a b c"] * 5, GREEDY)
    info = engine.get_server_info()
    assert info["protected_tokens"] == 0
    assert info["available_kv_tokens"] == info["max_total_num_tokens"]


def test_killing_the_scheduler_fails_the_next_call_quickly():
    eng = sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu")
    try:
        assert eng.generate("Hello", {"max_new_tokens": 2})["meta_info"]["completion_tokens"] == 2
        sched = dict(eng._procs)["scheduler"]
        os.kill(sched.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="scheduler"):
            eng.generate("Hello", {"max_new_tokens": 2})
        assert time.monotonic() - start < 5
    finally:
        eng.shutdown()
