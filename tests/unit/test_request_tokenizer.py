"""RequestTokenizer: tokenization runs in a worker pool (the event loop stays free), and input that
cannot fit is refused by size before anything is encoded (issue 15, item 4)."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.managers.generate_input import GenerateReqInput
from sglang.runtime.managers.prompt_limits import PromptLimits, longest_token_bytes
from sglang.runtime.managers.request_tokenizer import RequestTokenizer
from sglang.runtime.sampling.sampling_params import MAX_STOP_STR_LEN, MAX_STOP_STRINGS
from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_model_dir

ENCODE_S = 0.6  # how long the slow tokenizer takes per call
CONTEXT = 100


class SlowTokenizer:
    """One id per character; texts starting with "slow" block for a while first (as a huge prompt
    would). Records every call."""

    def __init__(self):
        self.calls = []

    def get_vocab(self) -> dict:
        return {"a": 0, "bcd": 1, "<|special|>": 2}  # longest entry: 11 bytes

    def encode(self, text: str, add_special_tokens: bool = True) -> list:
        self.calls.append(text)
        if text.startswith("slow"):
            time.sleep(ENCODE_S)
        return [ord(c) % 50 for c in text]


@pytest.fixture
def slow():
    tok = SlowTokenizer()
    rt = RequestTokenizer(tok, context_len=CONTEXT, vocab_size=50)
    tok.calls.clear()
    yield tok, rt
    rt.close()


async def _largest_loop_gap(work) -> tuple:
    """Run `work` while a ticker measures the longest time the loop went without running it."""
    gaps, done = [], asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    try:
        result = await work
    finally:
        done.set()
        await tick
    return result, max(gaps)


def test_tokenization_leaves_the_event_loop_free(slow):
    tok, rt = slow
    obj = GenerateReqInput(text=["slow first prompt", "slow second prompt"], sampling_params={"max_new_tokens": 2})
    (items, reqs), gap = asyncio.run(_largest_loop_gap(rt.tokenize_request(obj)))
    assert [r.input_ids for r in reqs] == [[ord(c) % 50 for c in t] for t in obj.text]
    assert gap < ENCODE_S / 2, f"the loop stalled {gap:.2f} s while prompts were encoded"


def test_prompt_too_many_bytes_is_refused_before_encoding(slow):
    tok, rt = slow
    assert rt.limits.max_text_bytes == CONTEXT * len("<|special|>")
    too_big = "a" * (rt.limits.max_text_bytes + 1)
    with pytest.raises(ValueError, match=rf"at most {rt.limits.max_text_bytes} bytes"):
        asyncio.run(rt.tokenize_request(GenerateReqInput(text=too_big)))
    # Bytes, not characters: 4-byte characters reach the limit four times sooner.
    with pytest.raises(ValueError, match="bytes"):
        asyncio.run(rt.tokenize_request(GenerateReqInput(text="😀" * (rt.limits.max_text_bytes // 4 + 1))))
    assert tok.calls == []


def test_huge_input_ids_are_refused_on_length_before_their_entries_are_scanned(slow):
    _, rt = slow
    ids = [1] * 5_000_000 + ["not an id"]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"context length is {CONTEXT}"):
        asyncio.run(rt.tokenize_request(GenerateReqInput(input_ids=ids)))
    assert time.perf_counter() - start < 5.0  # generous: a scan of 5M entries first would still pass


def test_stop_string_limits_are_checked_before_any_encoding(slow):
    tok, rt = slow
    many = GenerateReqInput(text="hi", sampling_params={"stop": [f"s{i}" for i in range(100_000)]})
    with pytest.raises(ValueError, match=f"at most {MAX_STOP_STRINGS}"):
        asyncio.run(rt.tokenize_request(many))
    long = GenerateReqInput(text="hi", sampling_params={"stop": ["x" * (MAX_STOP_STR_LEN + 1)]})
    with pytest.raises(ValueError, match=f"at most {MAX_STOP_STR_LEN} characters"):
        asyncio.run(rt.tokenize_request(long))
    regexes = GenerateReqInput(text="hi", sampling_params={"stop_regex": ["a"] * (MAX_STOP_STRINGS + 1)})
    with pytest.raises(ValueError, match="stop_regex"):
        asyncio.run(rt.tokenize_request(regexes))
    assert tok.calls == []


def test_stop_strings_at_the_limit_are_accepted(slow):
    tok, rt = slow
    stops = ["y" * MAX_STOP_STR_LEN] + [f"s{i}" for i in range(MAX_STOP_STRINGS - 1)]
    obj = GenerateReqInput(text="hi", sampling_params={"stop": stops, "max_new_tokens": 1})
    _, reqs = asyncio.run(rt.tokenize_request(obj))
    assert reqs[0].sampling_params.stop == stops


# ---------------------------------------------------------------------------------- the byte bound
@pytest.fixture(scope="module")
def llama_tokenizer():
    return get_tokenizer(tiny_model_dir("llama"))


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=300))
def test_byte_bound_never_refuses_a_prompt_that_fits(llama_tokenizer, text):
    """Sound for a real (byte-level BPE) tokenizer: no text takes fewer tokens than its bytes
    divided by the longest token's bytes, so a refused prompt could never have fit."""
    longest = longest_token_bytes(llama_tokenizer)
    tokens = len(llama_tokenizer.encode(text, add_special_tokens=False))
    assert len(text.encode("utf-8", "surrogatepass")) <= tokens * longest


def test_limits_without_a_vocabulary_check_token_counts_only():
    limits = PromptLimits(None, 10)
    assert limits.max_text_bytes is None
    limits.check_text("x" * 10_000)  # no byte bound known: the token count decides later
    with pytest.raises(ValueError, match="context length is 10"):
        limits.check_ids(list(range(10)))
