"""Engine.concat_and_append end to end (tokenizer manager -> ZMQ -> scheduler), plus the Engine's
model info and its refusal of image inputs."""

from __future__ import annotations

import asyncio
import re

import pytest

import sglang
from sglang.testing.fixtures import tiny_model_dir

PARENT = "Once upon a time, in a quiet village,"


@pytest.fixture(scope="module")
def engine():
    with sglang.Engine(model_path=tiny_model_dir("llama"), device="cpu", random_seed=0) as eng:
        yield eng


def _children(engine, n: int = 3) -> list:
    outs = [engine.generate(PARENT, {"max_new_tokens": 6, "temperature": 1.0, "seed": i}) for i in range(n)]
    return [PARENT + o["text"] for o in outs]


def _assert_idle(engine) -> None:
    info = engine.get_server_info()
    assert info["available_kv_tokens"] == info["max_total_num_tokens"] and info["protected_tokens"] == 0


def test_concat_from_texts_is_then_served_from_cache(engine):
    children = _children(engine)
    result = engine.concat_and_append(PARENT, children)
    assert result["complete"], result
    parent_ids = engine.tokenizer.encode(PARENT)
    ids = result["input_ids"]
    assert result["num_tokens"] == len(ids) == result["requested_tokens"]
    assert ids[: len(parent_ids)] == parent_ids and len(ids) > len(engine.tokenizer.encode(children[0]))
    assert result["copied_tokens"] > 0 and result["cached_prefix_tokens"] + result["copied_tokens"] == len(ids)
    out = engine.generate(input_ids=ids + [5, 6], sampling_params={"max_new_tokens": 2, "temperature": 0})
    assert out["meta_info"]["cached_tokens"] >= result["num_tokens"] - 1
    exact = engine.generate(input_ids=ids, sampling_params={"max_new_tokens": 1, "temperature": 0})
    assert exact["meta_info"]["cached_tokens"] >= result["num_tokens"] - 1
    _assert_idle(engine)


def test_concat_from_ids_and_async_variant(engine):
    tok = engine.tokenizer
    parent_ids = tok.encode("The list of colors:")
    children = [parent_ids + tok.encode(w, add_special_tokens=False) for w in (" red", " green and blue")]
    result = asyncio.run(engine.async_concat_and_append(parent_ids, children))
    suffixes = [c[len(parent_ids):] for c in children]
    assert result["input_ids"] == parent_ids + suffixes[0] + suffixes[1] and result["complete"]
    _assert_idle(engine)


def test_without_prefill_children_the_result_may_be_partial_but_is_cached(engine):
    children = _children(engine, 2)
    result = engine.concat_and_append(PARENT, children, prefill_children=False)
    assert result["num_tokens"] <= result["requested_tokens"]
    assert result["complete"] == (result["num_tokens"] == result["requested_tokens"])
    if result["num_tokens"] > 1:
        out = engine.generate(input_ids=result["input_ids"] + [7], sampling_params={"max_new_tokens": 1})
        assert out["meta_info"]["cached_tokens"] >= result["num_tokens"] - 1
    _assert_idle(engine)


@pytest.mark.parametrize("parent, children, needle", [
    (PARENT, [], "non-empty list"),
    (PARENT, "not a list", "non-empty list"),
    (5, [PARENT + " x"], "'parent' must be"),
    (PARENT, [{"text": "x"}], "'children[0]' must be"),
    (PARENT, [[1, 2, 10**9]], "token ids must be in"),
    ([], [PARENT], "'parent' is empty"),
])
def test_bad_input_raises_value_error(engine, parent, children, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        engine.concat_and_append(parent, children)
    assert engine.generate("Hi", {"max_new_tokens": 1})["meta_info"]["completion_tokens"] == 1


def test_get_model_info(engine):
    info = engine.get_model_info()
    tok = engine.tokenizer
    assert info["chat_template"] == tok.chat_template and "{{" in info["chat_template"]
    assert info["bos_token"] == tok.bos_token and info["eos_token"] == tok.eos_token
    assert info["supports_images"] is False and info["context_length"] == 1024
    assert info["vocab_size"] > 0 and info["model_path"] == tiny_model_dir("llama")


def test_image_data_is_refused_and_engine_keeps_working(engine):
    with pytest.raises(ValueError, match="does not accept images"):
        engine.generate("Describe", {"max_new_tokens": 2}, image_data="data:image/png;base64,AAAA")
    with pytest.raises(ValueError, match="does not accept images"):
        list(engine.generate("Describe", {"max_new_tokens": 2}, image_data=["x.png"], stream=True))
    out = engine.generate("Describe", {"max_new_tokens": 2}, image_data=[None])  # empty: allowed
    assert out["meta_info"]["completion_tokens"] == 2
    _assert_idle(engine)
