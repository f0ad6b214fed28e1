"""docs/server_arguments.md from `ServerArgs`: one table per group of fields.

The groups are the comment lines that head each run of fields in the class body
(`# Memory and scheduling`), so a new field lands in its group without editing this file; the
flag, type, choices, default and help text are the field's own (what `--help` prints).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
from typing import Any, Dict, List, Tuple

from sglang.tools.markdown import code, generated_notice, table

_GROUP_COMMENT = re.compile(r"^    # (?P<title>[A-Za-z].*?)\s*$")
_FIELD_LINE = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\s*:")
UNGROUPED = "Other options"


def field_groups(cls: type) -> List[Tuple[str, List[dataclasses.Field]]]:
    """(group title, fields) in source order; fields before any heading comment go to UNGROUPED."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    groups: Dict[str, List[dataclasses.Field]] = {}
    title = UNGROUPED
    for line in textwrap.dedent(inspect.getsource(cls)).splitlines():
        heading = _GROUP_COMMENT.match(line)
        if heading:
            title = heading.group("title")
            continue
        found = _FIELD_LINE.match(line)
        if found and found.group("name") in fields:
            groups.setdefault(title, []).append(fields.pop(found.group("name")))
    if fields:  # defined in a way the source scan did not see (e.g. inherited)
        groups.setdefault(UNGROUPED, []).extend(fields.values())
    return list(groups.items())


def flag_of(f: dataclasses.Field) -> str:
    return "--" + f.name.replace("_", "-")


def _is_bool(f: dataclasses.Field) -> bool:
    return f.type in ("bool", bool)


def _value_text(f: dataclasses.Field) -> str:
    if _is_bool(f):
        return "flag (no value)"
    if "choices" in f.metadata:
        return "one of " + ", ".join(code(c) for c in f.metadata["choices"])
    text = str(f.type).replace("Optional[", "").rstrip("]")
    return {"str": "string", "int": "integer", "float": "number"}.get(text, text)


def _default_text(f: dataclasses.Field, required: bool) -> str:
    default: Any = f.default if f.default is not dataclasses.MISSING else None
    if _is_bool(f):
        return "on" if default else "off"
    if required:
        return "required"
    return "unset" if default is None else code(default)


def _required_flags() -> set:
    """Flags the real command line requires (read from launch_server's parser, not guessed)."""
    from sglang.launch_server import build_parser

    return {opt for action in build_parser()._actions if action.required for opt in action.option_strings}


def render(cls: type) -> str:
    from sglang.tools.gen_docs import REGENERATE

    parts = [
        "# Server arguments",
        "",
        generated_notice(REGENERATE, ["sglang/runtime/server_args.py (ServerArgs: field help, groups, defaults)"]),
        "",
        "Every option of `python -m sglang.launch_server` (also `--help`, which prints the same text). The same "
        "names are keyword arguments of `sglang.Engine(...)`, `sgl.Runtime(...)` and `ServerArgs(...)`: "
        "`--max-running-requests 8` is `max_running_requests=8`. Flags without a value turn something on. "
        "\"unset\" means the runtime picks a value at startup (the description says how); "
        "`GET /get_server_info` shows the values a running server chose.",
        "",
        "An invalid value or combination stops the server before it loads anything, with "
        "`sglang.launch_server: error: ...` naming the option (exit code 2 for argument errors, 1 for "
        "a checkpoint that cannot be used); see [troubleshooting](troubleshooting.md).",
        "",
        "Groups: " + ", ".join(f"[{title}](#{_anchor(title)})" for title, _ in field_groups(cls)) + ".",
    ]
    required = _required_flags()
    for title, fields in field_groups(cls):
        rows = [(code(flag_of(f)), _value_text(f), _default_text(f, flag_of(f) in required), f.metadata.get("help", ""))
                for f in fields]
        parts += ["", f"## {title}", "", table(("flag", "value", "default", "what it does"), rows)]
    return "\n".join(parts) + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, spaces to dashes, punctuation dropped."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")
