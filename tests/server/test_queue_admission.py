"""--max-running-requests 2 --max-queued-requests 3 over HTTP: of 12 simultaneous requests, 5 are
served (2 running + 3 queued) and 7 get a 503 naming the flag (issue 15, item 20)."""

from __future__ import annotations

import asyncio
from typing import Iterator

import httpx
import pytest

from sglang.testing.fixtures import tiny_model_dir
from tests.server.http_helpers import assert_error_body, wait_kv_idle
from tests.server.server_process import ServerProcess, start_server

RUNNING, QUEUED, ARRIVING = 2, 3, 12
# Long enough that no admitted request finishes while the 12 are still arriving.
MAX_NEW_TOKENS = 100


@pytest.fixture(scope="module")
def limited() -> Iterator[ServerProcess]:
    proc = start_server(tiny_model_dir("llama"), ["--device", "cpu", "--max-running-requests", str(RUNNING),
                                                  "--max-queued-requests", str(QUEUED)])
    yield proc
    proc.terminate()


async def _together(base_url: str) -> list:
    limits = httpx.Limits(max_connections=ARRIVING, max_keepalive_connections=ARRIVING)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits, trust_env=False) as client:
        await asyncio.gather(*[client.get("/health") for _ in range(ARRIVING)])  # connections open first
        sampling = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0, "ignore_eos": True}
        return await asyncio.gather(*[client.post("/generate", json={"input_ids": [5, 6, 7 + i],
                                                                     "sampling_params": sampling})
                                      for i in range(ARRIVING)])


def test_simultaneous_requests_admit_running_plus_queued(limited):
    responses = asyncio.run(_together(limited.base_url))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == RUNNING + QUEUED, statuses
    assert statuses.count(503) == ARRIVING - RUNNING - QUEUED, statuses
    for response in responses:
        if response.status_code == 200:
            assert response.json()["meta_info"]["completion_tokens"] == MAX_NEW_TOKENS
        else:
            body = assert_error_body(response, 503)
            assert "--max-queued-requests" in body["message"], body["message"]
    wait_kv_idle(limited.base_url)
