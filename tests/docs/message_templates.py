"""Message templates of the source code, to check that documented error messages still exist.

Every string literal in `sglang/` becomes a template: f-string placeholders and printf-style
`%s`/`%d`/... become wildcards, the literal text must match exactly. A documented message (with
example values filled in) is accounted for when, once the wrappers that only say where it was
printed are taken off (`sglang.launch_server: error: `, `the scheduler process failed to start: `,
`RuntimeError: `), a template with at
least MIN_LITERAL_CHARS of literal text matches the whole rest of it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

MIN_LITERAL_CHARS = 15
# Prefixes that carry no message of their own: the launcher's and argparse's error lines, a child
# process's startup failure, and the exception class Python prints before a message.
_WRAPPERS = re.compile(r"^(?:(?:python -m )?sglang\.launch_server: error: |the [a-z]+ process failed to start: "
                       r"|[A-Z][A-Za-z]*Error: )+")
_PRINTF = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrfgi]")


@dataclass(frozen=True)
class Template:
    parts: tuple  # literal strings, None for a placeholder
    where: str  # file:line

    @property
    def literal_chars(self) -> int:
        return sum(len(p) for p in self.parts if p is not None)

    @property
    def informative(self) -> bool:
        return self.literal_chars >= MIN_LITERAL_CHARS

    def regex(self) -> re.Pattern:
        return re.compile("".join(".*?" if p is None else re.escape(p) for p in self.parts), re.DOTALL)


def _parts_of(node: ast.AST) -> Optional[tuple]:
    if isinstance(node, ast.JoinedStr):
        parts: List[Optional[str]] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.extend(_split_printf(value.value))
            else:
                parts.append(None)
        return tuple(parts)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return tuple(_split_printf(node.value))
    return None


def _split_printf(text: str) -> List[Optional[str]]:
    out: List[Optional[str]] = []
    for i, piece in enumerate(_PRINTF.split(text)):
        if i:
            out.append(None)
        if piece:
            out.append(piece)
    return out


def templates_in(paths: Iterable[Path], root: Path) -> List[Template]:
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        # The literal pieces of an f-string are nodes too; only the whole f-string is a message.
        pieces = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
        for node in ast.walk(tree):
            if id(node) in pieces:
                continue
            parts = _parts_of(node)
            if parts:
                found.append(Template(parts, f"{path.relative_to(root)}:{node.lineno}"))
    return found


def source_templates(package_dir: Path) -> List[Template]:
    """The informative templates of every module under `package_dir`."""
    return [t for t in templates_in(sorted(package_dir.rglob("*.py")), package_dir.parent) if t.informative]


def unwrap(message: str) -> str:
    """`message` without the prefixes that only say where it was printed."""
    return _WRAPPERS.sub("", message)


def explaining_template(message: str, templates: Sequence[Template]) -> Optional[Template]:
    """The template with the most literal text that matches all of the unwrapped `message`."""
    text = unwrap(message)
    matching = [t for t in templates if t.regex().fullmatch(text)]
    return max(matching, key=lambda t: t.literal_chars, default=None)


def text_blocks(markdown: str) -> List[tuple]:
    """(line number, line) of every non-empty line inside the page's ```text blocks."""
    out, inside = [], False
    for number, line in enumerate(markdown.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            inside = not inside and stripped == "```text"
            continue
        if inside and stripped:
            out.append((number, stripped))
    return out
