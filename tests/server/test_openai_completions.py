"""/v1/completions through the unmodified `openai` client and raw httpx."""

from __future__ import annotations

import openai
import pytest

from tests.server.http_helpers import DONE, stream_events

PROMPTS = ["The capital of France is", "Once upon a time", "1, 2, 3,"]
GREEDY = {"temperature": 0.0, "max_tokens": 10}


def native_text(http, prompt, max_new=10, **params) -> str:
    body = {"text": prompt, "sampling_params": {"temperature": 0, "max_new_tokens": max_new, **params}}
    response = http.post("/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()["text"]


def token_ids(http, text) -> list:
    return http.post("/tokenize", json={"prompt": text}).json()["tokens"]


def test_text_prompt_matches_native(oai, http, model):
    reply = oai.completions.create(model=model, prompt=PROMPTS[0], **GREEDY)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].text == native_text(http, PROMPTS[0])
    assert reply.usage.prompt_tokens == len(token_ids(http, PROMPTS[0]))
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    again = oai.completions.create(model=model, prompt=PROMPTS[0], **GREEDY)
    # Now in the radix cache: all of the prompt but its last token, which is computed for its logits.
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1


def test_list_prompts_keep_order(oai, http, model):
    reply = oai.completions.create(model=model, prompt=PROMPTS, **GREEDY)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert [c.text for c in reply.choices] == [native_text(http, p) for p in PROMPTS]


def test_token_id_prompts_equal_text_prompts(oai, http, model):
    ids = [token_ids(http, p) for p in PROMPTS[:2]]
    single = oai.completions.create(model=model, prompt=ids[0], **GREEDY)
    batch = oai.completions.create(model=model, prompt=ids, **GREEDY)
    texts = [native_text(http, p) for p in PROMPTS[:2]]
    assert single.choices[0].text == texts[0]
    assert [c.text for c in batch.choices] == texts


def test_echo_and_prompt_logprobs(oai, http, model):
    prompt = PROMPTS[1]
    reply = oai.completions.create(model=model, prompt=prompt, echo=True, logprobs=2, **GREEDY)
    choice = reply.choices[0]
    assert choice.text == prompt + native_text(http, prompt)
    n_prompt = reply.usage.prompt_tokens
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == n_prompt + reply.usage.completion_tokens
    assert lp.token_logprobs[0] is None and all(v is not None for v in lp.token_logprobs[1:])
    assert lp.text_offset == sorted(lp.text_offset)


def test_output_logprobs(oai, model):
    reply = oai.completions.create(model=model, prompt=PROMPTS[2], logprobs=3, **GREEDY)
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == reply.usage.completion_tokens
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(top) <= 3
        assert chosen == pytest.approx(max(top.values()), abs=1e-4)  # greedy


def test_n_with_list_prompts_is_prompt_major(oai, model):
    reply = oai.completions.create(model=model, prompt=PROMPTS[:2], n=2, max_tokens=4, temperature=0)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    texts = [c.text for c in reply.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3]  # greedy: the n samples of a prompt agree
    single = [oai.completions.create(model=model, prompt=p, max_tokens=4, temperature=0) for p in PROMPTS[:2]]
    assert reply.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in single)


def test_best_of_and_suffix_rejected_clearly(oai, model):
    with pytest.raises(openai.BadRequestError, match="best_of is not supported"):
        oai.completions.create(model=model, prompt="x", best_of=2, n=1)
    with pytest.raises(openai.BadRequestError, match="suffix"):
        oai.completions.create(model=model, prompt="x", suffix="tail")


def test_stream_deltas_concatenate_to_whole(oai, model):
    whole = oai.completions.create(model=model, prompt=PROMPTS[0], **GREEDY)
    chunks = list(oai.completions.create(model=model, prompt=PROMPTS[0], stream=True,
                                         stream_options={"include_usage": True}, **GREEDY))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    finishes = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_stream_n_and_echo_raw(http, model):
    body = {"model": model, "prompt": PROMPTS[2], "n": 2, "echo": True, "stream": True, "max_tokens": 5,
            "temperature": 0}
    events = stream_events(http, "/v1/completions", body)
    assert events[-1] == DONE
    per_index = {0: "", 1: ""}
    finishes = []
    for event in events[:-1]:
        for choice in event["choices"]:
            per_index[choice["index"]] += choice["text"]
            if choice["finish_reason"]:
                finishes.append(choice["index"])
    assert sorted(finishes) == [0, 1]
    assert per_index[0] == per_index[1] and per_index[0].startswith(PROMPTS[2])


def test_stop_and_matched_stop(oai, model):
    text = oai.completions.create(model=model, prompt=PROMPTS[1], temperature=0, max_tokens=20,
                                  extra_body={"ignore_eos": True}).choices[0].text
    stop = text[3:5]
    assert stop.strip(), f"degenerate stop candidate in {text!r}"
    reply = oai.completions.create(model=model, prompt=PROMPTS[1], temperature=0, max_tokens=20, stop=stop,
                                   extra_body={"ignore_eos": True})
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and choice.model_extra["matched_stop"] == stop
    assert choice.text == text[:text.index(stop)]


def test_stop_token_id_reports_token_id(http, model):
    ids = http.post("/generate", json={"text": PROMPTS[0], "sampling_params": {"temperature": 0,
                                       "max_new_tokens": 6}}).json()["output_ids"]
    stop_id = ids[3]
    first = ids.index(stop_id)
    body = {"model": model, "prompt": PROMPTS[0], "max_tokens": 6, "temperature": 0, "stop_token_ids": [stop_id]}
    reply = http.post("/v1/completions", json=body).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["matched_stop"] == stop_id
    assert reply["usage"]["completion_tokens"] == first + 1  # the stop token counts, its text is not shown


def test_seed_reproducible(oai, model):
    def sample(seed):
        return oai.completions.create(model=model, prompt=PROMPTS[0], temperature=1.0, max_tokens=16,
                                      seed=seed).choices[0].text

    assert sample(5) == sample(5)
    assert sample(6) != sample(5) or sample(7) != sample(5)


def test_default_max_tokens_is_16(oai, model):
    reply = oai.completions.create(model=model, prompt=PROMPTS[0], temperature=0, extra_body={"ignore_eos": True})
    assert reply.usage.completion_tokens == 16 and reply.choices[0].finish_reason == "length"


def test_too_large_max_tokens_and_long_prompt(oai, model):
    with pytest.raises(openai.BadRequestError, match="at most"):
        oai.completions.create(model=model, prompt=PROMPTS[0], max_tokens=5000)
    with pytest.raises(openai.BadRequestError, match="context length"):
        oai.completions.create(model=model, prompt=[3 + i % 900 for i in range(1100)], max_tokens=1)


# ---------------------------------------------------------------------------------- hardening
EOS_ID = 998  # the tiny llama's eos_token_id (generation_config: [998, 995])


def _stop_cases(http) -> list:
    """(extra request fields, expected matched_stop) for a stop string, a stop token id and EOS."""
    body = {"text": PROMPTS[1], "sampling_params": {"temperature": 0, "max_new_tokens": 20, "ignore_eos": True}}
    out = http.post("/generate", json=body).json()
    stop = out["text"][3:5]
    assert stop.strip(), f"degenerate stop candidate in {out['text']!r}"
    stop_id = out["output_ids"][3]
    return [({"stop": stop, "ignore_eos": True}, stop), ({"stop_token_ids": [stop_id], "ignore_eos": True}, stop_id),
            ({"logit_bias": {str(EOS_ID): 100}}, EOS_ID)]


def test_stream_final_chunk_carries_matched_stop(http, model):
    for extra, expected in _stop_cases(http):
        body = {"model": model, "prompt": PROMPTS[1], "temperature": 0, "max_tokens": 20, "stream": True, **extra}
        events = stream_events(http, "/v1/completions", body)
        assert events[-1] == DONE
        last = events[-2]["choices"][0]
        assert last["finish_reason"] == "stop" and last["matched_stop"] == expected, (extra, last)
        assert all(c["matched_stop"] is None for e in events[:-2] for c in e["choices"])
    body = {"model": model, "prompt": PROMPTS[1], "max_tokens": 3, "stream": True, "ignore_eos": True}
    last = stream_events(http, "/v1/completions", body)[-2]["choices"][0]
    assert last["finish_reason"] == "length" and "matched_stop" in last and last["matched_stop"] is None


def test_string_prompt_counts_as_one_prompt(oai, model):
    """A string is one prompt, whatever its length: n=128 with a 40-character prompt is 128 completions."""
    reply = oai.completions.create(model=model, prompt="a" * 40, n=128, max_tokens=1)
    assert len(reply.choices) == 128
    with pytest.raises(openai.BadRequestError, match="33 prompts x n=128"):
        oai.completions.create(model=model, prompt=["a"] * 33, n=128, max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="33 prompts x n=128"):
        oai.completions.create(model=model, prompt=[[5, 6]] * 33, n=128, max_tokens=1)
    ids = oai.completions.create(model=model, prompt=list(range(3, 3 + 40)), n=128, max_tokens=1)
    assert len(ids.choices) == 128  # a list of token ids is one prompt too


def _check_offsets(text: str, logprobs: dict, checked: int) -> None:
    """Offsets are ordered and index `text`; each of the first `checked` tokens that is plain text
    (not BOS, not part of a split character) starts where `text` has it."""
    offsets, tokens = logprobs["text_offset"], logprobs["tokens"]
    assert len(offsets) == len(tokens)
    assert offsets == sorted(offsets) and all(0 <= o <= len(text) for o in offsets), (offsets, len(text))
    for token, offset in list(zip(tokens, offsets))[:checked]:
        if token.isascii() and token.isprintable() and not token.startswith("<|"):
            assert text.startswith(token, offset), (token, offset, text)


@pytest.mark.parametrize("prompt", ["Once upon a time", "日本語 ok, é"])
def test_echo_text_offsets_index_the_returned_text(http, model, prompt):
    body = {"model": model, "prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 6, "temperature": 0}
    choice = http.post("/v1/completions", json=body).json()["choices"][0]
    lp, text = choice["logprobs"], choice["text"]
    assert lp["tokens"][0] == "<|begin_of_text|>" and lp["text_offset"][:2] == [0, 0]  # BOS adds no text
    n_prompt = len(token_ids(http, prompt))
    _check_offsets(text, lp, len(lp["tokens"]))
    assert lp["text_offset"][n_prompt] == len(prompt)  # the first output token starts right after the echo
    streamed = stream_events(http, "/v1/completions", {**body, "stream": True})
    offsets = [o for e in streamed[:-1] for c in e["choices"] if c["logprobs"] for o in c["logprobs"]["text_offset"]]
    assert offsets == lp["text_offset"]


@pytest.mark.parametrize("prompt", ["日本", "é"])
def test_output_text_offsets_count_split_bytes_once(http, model, prompt):
    """These prompts make the tiny model emit byte tokens (shown as U+FFFD pieces) that form fewer
    characters of text than their pieces' lengths add up to."""
    body = {"model": model, "prompt": prompt, "logprobs": 0, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    choice = http.post("/v1/completions", json=body).json()["choices"][0]
    tokens = choice["logprobs"]["tokens"]
    assert sum(len(t) for t in tokens) > len(choice["text"]), "the case no longer has split bytes"
    _check_offsets(choice["text"], choice["logprobs"], len(tokens))
