"""Every error message quoted on docs/troubleshooting.md (its ```text blocks) still exists in the
code: a message template from sglang/ with enough literal text must match inside it. Rewording a
message in the code without updating the page fails here."""

from __future__ import annotations

import pytest

from tests.docs.message_templates import Template, explaining_template, source_templates, text_blocks
from tests.docs.snippet_runner import DOCS_DIR, REPO_ROOT

PAGE = DOCS_DIR / "troubleshooting.md"
MESSAGES = text_blocks(PAGE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def templates() -> list:
    return source_templates(REPO_ROOT / "sglang")


def test_the_page_quotes_messages() -> None:
    assert len(MESSAGES) >= 20, f"expected the troubleshooting page to quote its messages, found {len(MESSAGES)}"


@pytest.mark.parametrize("line,message", MESSAGES, ids=[f"line{n}" for n, _ in MESSAGES])
def test_message_exists_in_code(line: int, message: str, templates: list) -> None:
    found = explaining_template(message, templates)
    assert found is not None, (f"troubleshooting.md:{line} quotes a message that no string in sglang/ "
                               f"produces any more:\n  {message}\nupdate the page to the code's wording")


def test_the_check_rejects_a_reworded_message(templates: list) -> None:
    real = "the server is starting (warm-up not finished); retry shortly"
    assert explaining_template(real, templates) is not None
    assert explaining_template(real.replace("warm-up", "warmup"), templates) is None


def test_the_launcher_prefix_explains_nothing() -> None:
    wrapper = Template(("sglang.launch_server: error: ", None), "x.py:1")
    line = "sglang.launch_server: error: --model-path '/x': no such directory"
    assert explaining_template(line, [wrapper]) is None
    assert explaining_template(line, [wrapper, Template((None, " ", None, ": no such directory"), "y.py:1")])
