"""The docs' servers for the snippet tests: started once per session from the docs' own launch
block (and a page's own launch block for the snippets after it), on free ports."""

from __future__ import annotations

from typing import Iterator

import pytest

from sglang.testing.doc_snippets import collect
from tests.docs.snippet_runner import DOCS_DIR, DocServers


@pytest.fixture(scope="session")
def smollm2_cached() -> str:
    """The docs' model; without it in the cache every snippet test skips, saying how to get it."""
    from sglang.testing.models import smollm2_gguf_path

    try:
        return smollm2_gguf_path(fetch=False)
    except FileNotFoundError as exc:
        pytest.skip(f"the doc snippets run on SmolLM2-135M-Instruct: {exc}")


@pytest.fixture(scope="session")
def doc_servers(smollm2_cached: str) -> Iterator[DocServers]:
    servers = DocServers(collect(DOCS_DIR))
    yield servers
    servers.stop()
