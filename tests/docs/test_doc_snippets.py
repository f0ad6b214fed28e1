"""Every ```python and ```bash block of docs/*.md runs and exits 0 (see sglang/testing/doc_snippets.py
for the markers, tests/docs/snippet_runner.py for how a block is run).

The blocks run in page order against SmolLM2-135M-Instruct: one server for the session, started by
the block marked `<!-- doc-test: server -->`, and a page's own server for the blocks after a
launch block on that page. Blocks marked `skip (reason)` are reported as skipped with the reason.
Needs the model in the cache (`python -m sglang.testing.models smollm2`); skips without it.
"""

from __future__ import annotations

import httpx
import pytest

from sglang.testing.doc_snippets import Snippet, collect
from tests.docs.snippet_runner import DOCS_DIR, DocServers, run_snippet

SNIPPETS = collect(DOCS_DIR)
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_doc_snippet(snippet: Snippet, doc_servers: DocServers) -> None:
    if snippet.skip_reason is not None:
        pytest.skip(f"marked in the docs: {snippet.skip_reason}")
    port = doc_servers.port_for(snippet)  # starts the block's server when it is a launch block
    if snippet.starts_server:
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=30, trust_env=False).status_code == 200
        return
    run = run_snippet(snippet, port)
    assert run.returncode == 0, run.report
