"""The runnable code blocks of the Markdown docs (`docs/*.md`), for the docs test.

    python -m sglang.testing.doc_snippets docs      # list every block and what the test does with it

A fenced block whose language is python, bash, shell or sh is a snippet: the docs test runs it.
A marker line (an HTML comment, visible in the Markdown source) right before the fence changes that:

    <!-- doc-test: skip (why it cannot run here) -->   not run; the reason is required
    <!-- doc-test: server -->                           the bash block that starts the docs' server

A bash block that runs `sglang.launch_server` (without `--help`) starts a server; the snippets after
it on the same page talk to that server, the others to the `server` block's. Markers that are not
followed by a snippet, unknown markers, skips without a reason and unclosed fences are errors, so
a typo cannot silently turn a check off.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

RUN_LANGUAGES = {"python": "python", "bash": "bash", "shell": "bash", "sh": "bash"}
DOCS_PORT = 30000  # the port the docs' snippets use; the test rewrites it

_MARKER = re.compile(r"^\s*<!--\s*doc-test:(.*?)-->\s*$")
_SKIP = re.compile(r"^skip\s*\((.*)\)$")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_LAUNCH = re.compile(r"sglang\.launch_server\b(?![^\n]*--help)")
# Forms of the docs' server address; each is rewritten with the port of the server under test.
_PORT_FORMS = ((re.compile(rf"\b(localhost|127\.0\.0\.1):{DOCS_PORT}\b"), r"\g<1>:{port}"),
               (re.compile(rf"(--port[ =]){DOCS_PORT}\b"), r"\g<1>{port}"),
               (re.compile(rf"\b(port\s*=\s*){DOCS_PORT}\b"), r"\g<1>{port}"))


class DocSnippetError(ValueError):
    """A malformed doc page: a bad marker or an unclosed fence (names page and line)."""


@dataclass(frozen=True)
class Snippet:
    page: str  # file name, e.g. "openai_api.md"
    line: int  # 1-based line of the opening fence
    language: str  # "python" or "bash"
    code: str
    skip_reason: Optional[str] = None
    is_session_server: bool = False

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def starts_server(self) -> bool:
        return self.language == "bash" and bool(_LAUNCH.search(self.code))

    def with_port(self, port: int) -> str:
        """The code with the docs' server port replaced by `port`."""
        code = self.code
        for form, replacement in _PORT_FORMS:
            code = form.sub(replacement.format(port=port), code)
        return code


def parse_page(text: str, page: str) -> List[Snippet]:
    """Every runnable block of one Markdown page, in order."""
    lines = text.splitlines()
    snippets: List[Snippet] = []
    marker: Optional[tuple] = None  # (line number, parsed marker) waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        found = _MARKER.match(line)
        if found:
            if marker is not None:
                raise DocSnippetError(f"{page}:{marker[0]}: marker not followed by a code block")
            marker = (i + 1, _parse_marker(found.group(1).strip(), page, i + 1))
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence is None:
            if line.strip() and marker is not None:
                raise DocSnippetError(f"{page}:{marker[0]}: a doc-test marker must come right before "
                                      f"a code block (only blank lines between)")
            i += 1
            continue
        end = _closing_fence(lines, i, fence, page)
        language = RUN_LANGUAGES.get(fence.group("info").lower())
        if language is None:
            if marker is not None:
                raise DocSnippetError(f"{page}:{marker[0]}: marker before a ```{fence.group('info')} block, "
                                      f"which is never run (runnable: {', '.join(RUN_LANGUAGES)})")
        else:
            code = _dedent(lines[i + 1:end], len(fence.group("indent")))
            kind, reason = marker[1] if marker else ("run", None)
            snippet = Snippet(page, i + 1, language, code, reason, kind == "server")
            if snippet.is_session_server and not snippet.starts_server:
                raise DocSnippetError(f"{page}:{i + 1}: the server marker needs a bash block running "
                                      f"sglang.launch_server")
            snippets.append(snippet)
        marker = None
        i = end + 1
    if marker is not None:
        raise DocSnippetError(f"{page}:{marker[0]}: marker not followed by a code block")
    return snippets


def _parse_marker(body: str, page: str, line: int) -> tuple:
    if body == "server":
        return ("server", None)
    skip = _SKIP.match(body)
    if skip is None:
        raise DocSnippetError(f"{page}:{line}: unknown doc-test marker {body!r}; use "
                              f"'skip (reason)' or 'server'")
    reason = skip.group(1).strip()
    if not reason:
        raise DocSnippetError(f"{page}:{line}: a skipped block needs its reason: "
                              f"<!-- doc-test: skip (why it cannot run) -->")
    return ("skip", reason)


def _closing_fence(lines: Sequence[str], start: int, opening: re.Match, page: str) -> int:
    char, length = opening.group("fence")[0], len(opening.group("fence"))
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped and set(stripped) == {char} and len(stripped) >= length:
            return j
    raise DocSnippetError(f"{page}:{start + 1}: code block never closed")


def _dedent(lines: Sequence[str], indent: int) -> str:
    """Block lines without the fence's indentation (blocks inside list items are indented)."""
    return "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in lines) + "\n"


def collect(docs_dir: Path) -> List[Snippet]:
    """The snippets of every `*.md` page in `docs_dir`, pages in name order; exactly one block
    must carry the server marker."""
    snippets = [s for page in sorted(docs_dir.glob("*.md"))
                for s in parse_page(page.read_text(encoding="utf-8"), page.name)]
    servers = [s.id for s in snippets if s.is_session_server]
    if len(servers) != 1:
        raise DocSnippetError(f"exactly one block must carry <!-- doc-test: server -->; found {len(servers)}: "
                              f"{', '.join(servers) or 'none'}")
    return snippets


def governing_server(snippets: Sequence[Snippet], snippet: Snippet) -> Optional[Snippet]:
    """The page's server-starting block that `snippet` talks to: the last one before it on its
    page (the block itself if it starts one); None means the session server."""
    found = None
    for other in snippets:
        if other.page == snippet.page and other.line <= snippet.line and other.starts_server \
                and not other.is_session_server and other.skip_reason is None:
            found = other
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sglang.testing.doc_snippets", description=__doc__.split("\n\n")[0])
    parser.add_argument("docs_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        snippets = collect(args.docs_dir)
    except DocSnippetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for s in snippets:
        what = (f"skip ({s.skip_reason})" if s.skip_reason else "session server" if s.is_session_server
                else "starts a server" if s.starts_server else "run")
        print(f"{s.id:32} {s.language:7} {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
