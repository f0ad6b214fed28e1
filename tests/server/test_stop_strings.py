"""Stop strings over HTTP that start inside one token and end inside the next: the finish is
`stop` and the text is cut before the string, whole or streamed, on /generate and /v1/completions."""

from __future__ import annotations

import pytest

from sglang.runtime.utils import get_tokenizer
from sglang.testing.fixtures import tiny_model_dir
from sglang.testing.stop_strings import StraddlingStop, straddling_stop
from tests.server.http_helpers import DONE, stream_events

PROMPT = "Once upon a time"
MAX_NEW = 16


@pytest.fixture(scope="module")
def straddle(http) -> StraddlingStop:
    body = {"text": PROMPT, "sampling_params": {"max_new_tokens": MAX_NEW, "temperature": 0, "ignore_eos": True}}
    base = http.post("/generate", json=body).json()
    found = straddling_stop(get_tokenizer(tiny_model_dir("llama")), base["output_ids"])
    assert base["text"].startswith(found.text_before + found.stop)
    return found


def _native_body(straddle: StraddlingStop, stream: bool) -> dict:
    params = {"max_new_tokens": MAX_NEW, "temperature": 0, "ignore_eos": True, "stop": straddle.stop}
    return {"text": PROMPT, "sampling_params": params, "stream": stream}


def test_generate_stops_and_trims(http, straddle):
    out = http.post("/generate", json=_native_body(straddle, stream=False)).json()
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": straddle.stop}
    assert out["text"] == straddle.text_before
    assert out["meta_info"]["completion_tokens"] == straddle.completing_token + 1


def test_generate_stream_never_shows_the_stop_string(http, straddle):
    events = stream_events(http, "/generate", _native_body(straddle, stream=True))
    assert events[-1] == DONE
    chunks = events[:-1]
    assert all(straddle.text_before.startswith(c["text"]) for c in chunks)  # cumulative text
    assert chunks[-1]["text"] == straddle.text_before
    assert chunks[-1]["meta_info"]["finish_reason"] == {"type": "stop", "matched": straddle.stop}


@pytest.mark.parametrize("stream", [False, True])
def test_completions_stop_and_trim(oai, model, straddle, stream):
    kwargs = {"model": model, "prompt": PROMPT, "max_tokens": MAX_NEW, "temperature": 0.0, "stop": [straddle.stop],
              "extra_body": {"ignore_eos": True}}
    if stream:
        chunks = list(oai.completions.create(stream=True, **kwargs))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        reply = oai.completions.create(**kwargs)
        text, finish = reply.choices[0].text, [reply.choices[0].finish_reason]
    assert text == straddle.text_before
    assert finish == ["stop"]
