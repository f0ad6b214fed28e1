"""The docs as a whole: the snippet markers parse, links between pages resolve, the index maps
every page, and facts the pages state by name (architectures) exist in the code. Also the unit
tests of the snippet collector itself."""

from __future__ import annotations

import re

import pytest

from sglang.testing.doc_snippets import DocSnippetError, Snippet, collect, governing_server, parse_page
from tests.docs.snippet_runner import DOCS_DIR

PAGES = sorted(DOCS_DIR.glob("*.md"))
_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#([^)\s]+))?\)")


def _anchors(text: str) -> set:
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_snippets_collect_with_one_session_server() -> None:
    snippets = collect(DOCS_DIR)
    assert sum(s.is_session_server for s in snippets) == 1
    assert len([s for s in snippets if s.skip_reason is None]) >= 40


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_resolve(page) -> None:
    text = page.read_text(encoding="utf-8")
    for target, anchor in _LINK.findall(text):
        path = DOCS_DIR / target
        assert path.is_file(), f"{page.name} links to missing page {target}"
        if anchor:
            assert anchor in _anchors(path.read_text(encoding="utf-8")), f"{page.name}: no #{anchor} in {target}"


def test_index_maps_every_page() -> None:
    index = (DOCS_DIR / "index.md").read_text(encoding="utf-8")
    missing = [p.name for p in PAGES if p.name != "index.md" and f"]({p.name})" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def test_architectures_named_in_the_docs_exist() -> None:
    from sglang.runtime.models.registry import supported_architectures

    known = set(supported_architectures())
    for page in PAGES:
        named = set(re.findall(r"`(\w+For(?:CausalLM|ConditionalGeneration))`", page.read_text(encoding="utf-8")))
        assert named <= known, f"{page.name} names architectures the registry lacks: {sorted(named - known)}"


# ----------------------------------------------------------------------------- the collector
def test_collects_runnable_languages_only() -> None:
    page = "text\n```python\nprint(1)\n```\n```json\n{}\n```\n```bash\necho hi\n```\n```\nplain\n```\n"
    snippets = parse_page(page, "p.md")
    assert [(s.language, s.line, s.code) for s in snippets] == [("python", 2, "print(1)\n"), ("bash", 8, "echo hi\n")]


def test_skip_marker_needs_a_reason() -> None:
    ok = parse_page("<!-- doc-test: skip (needs a GPU) -->\n\n```bash\nnvidia-smi\n```\n", "p.md")
    assert ok[0].skip_reason == "needs a GPU"
    with pytest.raises(DocSnippetError, match="needs its reason"):
        parse_page("<!-- doc-test: skip () -->\n```bash\nx\n```\n", "p.md")
    with pytest.raises(DocSnippetError, match="unknown doc-test marker"):
        parse_page("<!-- doc-test: skipp (x) -->\n```bash\nx\n```\n", "p.md")


@pytest.mark.parametrize("page", [
    "<!-- doc-test: skip (x) -->\ntext in between\n```bash\nx\n```\n",
    "<!-- doc-test: skip (x) -->\n```text\nnot run\n```\n",
    "<!-- doc-test: skip (x) -->\n",
    "```python\nnever closed\n",
    "<!-- doc-test: server -->\n```bash\necho not a server\n```\n",
])
def test_malformed_pages_are_errors(page: str) -> None:
    with pytest.raises(DocSnippetError, match="p.md:"):
        parse_page(page, "p.md")


def test_indented_blocks_are_dedented() -> None:
    snippet = parse_page("- item\n\n  ```python\n  x = 1\n  print(x)\n  ```\n", "p.md")[0]
    assert snippet.code == "x = 1\nprint(x)\n"


def test_port_rewriting() -> None:
    code = ('python -m sglang.launch_server --model-path M --port 30000\n'
            'curl http://localhost:30000/health http://127.0.0.1:30000/x\n'
            'Runtime(port=30000, max_total_tokens=30000)\n')
    out = Snippet("p.md", 1, "bash", code).with_port(41234)
    assert out == ('python -m sglang.launch_server --model-path M --port 41234\n'
                   'curl http://localhost:41234/health http://127.0.0.1:41234/x\n'
                   'Runtime(port=41234, max_total_tokens=30000)\n')


def test_snippets_after_a_page_launch_use_that_server() -> None:
    page = ("```bash\ncurl http://localhost:30000/health\n```\n"
            "```bash\npython -m sglang.launch_server --model-path M --port 30000\n```\n"
            "```python\nprint(1)\n```\n"
            "```bash\npython -m sglang.launch_server --help\n```\n")
    before, launch, after, help_ = parse_page(page, "p.md")
    snippets = [before, launch, after, help_]
    assert launch.starts_server and not help_.starts_server
    assert governing_server(snippets, before) is None
    assert governing_server(snippets, launch) == launch
    assert governing_server(snippets, after) == launch
    other_page = Snippet("q.md", 99, "python", "print(2)\n")
    assert governing_server([*snippets, other_page], other_page) is None
