"""One shared server for the server tests of this package.

It is started once for the package rather than once per module: a start costs 10-40 s on a
loaded 2-core box, and the tests never need a fresh one (each checks KV returns to idle, which
is a property of the pool, not of the server's history).
"""

from __future__ import annotations

from typing import Iterator

import httpx
import openai
import pytest

from sglang.testing.fixtures import tiny_model_dir
from tests.server.server_process import MODEL_NAME, ServerProcess, start_server


@pytest.fixture(scope="package")
def server() -> Iterator[ServerProcess]:
    proc = start_server(tiny_model_dir("llama"), ["--enable-metrics", "--device", "cpu"])
    yield proc
    proc.terminate()


@pytest.fixture(scope="package")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as client:
        yield client


@pytest.fixture(scope="package")
def oai(server: ServerProcess) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="package")
def model() -> str:
    return MODEL_NAME
