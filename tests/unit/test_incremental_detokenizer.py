"""IncrementalDetokenizer: streamed text equals a full decode, never shows unstable text, and
decodes only a small window per step."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.managers.incremental_detokenizer import IncrementalDetokenizer

MULTI_BYTE_TEXT = "café naïve 日本語 東京 🙂🚀 Привет"


# ---------------------------------------------------------------- shared helpers (also used by
# test_detokenizer_manager)


def build_tokenizer(out_dir: str) -> Any:
    """A trained byte-level BPE (qwen-style specials) loaded the way the server loads it."""
    from transformers import AutoTokenizer

    from sglang.testing.tokenizer_factory import write_tokenizer

    write_tokenizer("qwen2", out_dir, vocab_size=500)
    return AutoTokenizer.from_pretrained(out_dir)


def _byte_symbols() -> Dict[int, str]:
    """GPT-2 byte-level alphabet: byte value -> the character standing for it in the vocab."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def byte_token_ids(tokenizer: Any, text: str) -> List[int]:
    """One token per UTF-8 byte of `text`: multi-byte characters split across tokens."""
    symbols = _byte_symbols()
    return [tokenizer.convert_tokens_to_ids(symbols[b]) for b in text.encode("utf-8")]


def id_pool(tokenizer: Any) -> List[int]:
    """Ids worth drawing from: special tokens and bytes of multi-byte characters, which
    uniform draws over the vocabulary would rarely combine interestingly."""
    return list(tokenizer.all_special_ids) + byte_token_ids(tokenizer, MULTI_BYTE_TEXT)


def id_lists(tokenizer: Any, max_size: int = 40) -> st.SearchStrategy[List[int]]:
    anywhere = st.integers(0, len(tokenizer) - 1)
    text_ids = st.text(alphabet=MULTI_BYTE_TEXT + " ab.\n", max_size=12).map(tokenizer.encode)
    piece = st.one_of(anywhere.map(lambda i: [i]), st.sampled_from(id_pool(tokenizer)).map(lambda i: [i]), text_ids)
    return st.lists(piece, max_size=max_size).map(lambda parts: [i for p in parts for i in p])


def split(ids: Sequence[int], sizes: Sequence[int]) -> List[List[int]]:
    """Cut `ids` into consecutive chunks of the given sizes (cycled; the rest in the last one)."""
    chunks, pos, k = [], 0, 0
    while pos < len(ids):
        size = sizes[k % len(sizes)] if sizes else len(ids)
        chunks.append(list(ids[pos:pos + size]))
        pos += size
        k += 1
    return chunks


chunk_sizes = st.lists(st.integers(0, 5), min_size=1, max_size=8).filter(any)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(str(tmp_path_factory.mktemp("tokenizer")))


def stream(detok: IncrementalDetokenizer, chunks: List[List[int]]) -> List[str]:
    return [detok.add(c) for c in chunks] + [detok.flush()]


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(data=st.data(), sizes=chunk_sizes, skip=st.booleans())
def test_stream_equals_full_decode(tokenizer, data, sizes, skip):
    ids = data.draw(id_lists(tokenizer))
    detok = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip)
    pieces = stream(detok, split(ids, sizes))
    assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=skip)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), sizes=chunk_sizes)
def test_streamed_text_is_never_revised(tokenizer, data, sizes):
    """After every add(), what was shown is a prefix of the decode of any continuation: here,
    of the actual continuation, and it never ends in a replacement character that a later
    token turned into a real one."""
    ids = data.draw(id_lists(tokenizer))
    final = tokenizer.decode(ids, skip_special_tokens=True)
    detok = IncrementalDetokenizer(tokenizer)
    shown = ""
    for chunk in split(ids, sizes):
        shown += detok.add(chunk)
        assert final.startswith(shown)
    assert shown + detok.flush() == final


@settings(max_examples=200, deadline=None)
@given(data=st.data(), sizes=chunk_sizes, skip=st.booleans())
def test_prompt_context_does_not_change_output_text(tokenizer, data, sizes, skip):
    prompt = data.draw(id_lists(tokenizer, max_size=10))
    ids = data.draw(id_lists(tokenizer))
    detok = IncrementalDetokenizer(tokenizer, prompt_ids=prompt, skip_special_tokens=skip)
    assert "".join(stream(detok, split(ids, sizes))) == tokenizer.decode(ids, skip_special_tokens=skip)
    assert detok.num_output_ids == len(ids)


# ---------------------------------------------------------------- examples


def test_split_character_is_held_back_until_complete(tokenizer):
    ids = byte_token_ids(tokenizer, "日")
    assert len(ids) == 3
    detok = IncrementalDetokenizer(tokenizer)
    assert [detok.add([i]) for i in ids] == ["", "", "日"]
    assert detok.flush() == ""


def test_invalid_trailing_bytes_come_out_on_flush(tokenizer):
    ids = tokenizer.encode("ok ") + byte_token_ids(tokenizer, "🙂")[:2]
    detok = IncrementalDetokenizer(tokenizer)
    assert detok.add(ids) == "ok "
    assert detok.flush() == "\ufffd"


def test_add_after_flush_is_an_error(tokenizer):
    detok = IncrementalDetokenizer(tokenizer)
    detok.add(tokenizer.encode("hi"))
    detok.flush()
    with pytest.raises(RuntimeError, match="after flush"):
        detok.add([1])


class _RecordingTokenizer:
    """Wraps a tokenizer and records the arguments of every decode call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: List[tuple] = []

    def decode(self, ids, **kwargs):
        self.calls.append((list(ids), kwargs))
        return self.inner.decode(ids, **kwargs)


def test_cost_per_step_is_bounded_by_the_window(tokenizer):
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog. " * 40)
    spy = _RecordingTokenizer(tokenizer)
    detok = IncrementalDetokenizer(spy, prompt_ids=ids[:30])
    text = "".join(detok.add([i]) for i in ids) + detok.flush()
    assert text == tokenizer.decode(ids)
    assert len(ids) > 300
    assert max(len(call_ids) for call_ids, _ in spy.calls) <= 6


def test_decode_options_are_passed_through(tokenizer):
    spy = _RecordingTokenizer(tokenizer)
    detok = IncrementalDetokenizer(spy, skip_special_tokens=False, spaces_between_special_tokens=False)
    detok.add(tokenizer.encode("hello"))
    assert spy.calls
    assert all(kw == {"skip_special_tokens": False, "spaces_between_special_tokens": False} for _, kw in spy.calls)
