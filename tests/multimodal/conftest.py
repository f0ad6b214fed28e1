"""Clients for the multimodal server tests: each module starts its own `server` fixture (a tiny
vision-language model with that module's flags); these talk to it."""

from __future__ import annotations

from typing import Iterator

import httpx
import openai
import pytest

from tests.server.server_process import ServerProcess


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def oai(server: ServerProcess) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)
    yield client
    client.close()
