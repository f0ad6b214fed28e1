"""/metrics: inter_token_latency_seconds gets one observation per generated token after the first,
for streamed and non-streamed requests alike (issue 15, item 17)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.http_helpers import stream_events

TOKENS = 24
ITL_COUNT = "sglang:inter_token_latency_seconds_count"


def _itl_count(http) -> float:
    families = text_string_to_metric_families(http.get("/metrics").text)
    return next(s.value for f in families for s in f.samples if s.name == ITL_COUNT)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_inter_token_latency_is_observed_per_token(http, stream):
    before = _itl_count(http)
    body = {"text": "count the tokens", "stream": stream,
            "sampling_params": {"max_new_tokens": TOKENS, "temperature": 0, "ignore_eos": True}}
    if stream:
        events = stream_events(http, "/generate", body)
        completion = events[-2]["meta_info"]["completion_tokens"]
    else:
        response = http.post("/generate", json=body)
        assert response.status_code == 200, response.text
        completion = response.json()["meta_info"]["completion_tokens"]
    assert completion == TOKENS
    assert _itl_count(http) - before == TOKENS - 1
