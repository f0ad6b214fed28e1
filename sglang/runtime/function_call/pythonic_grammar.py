"""An EBNF for pythonic calls, `[get_weather(city="Paris", days=3), ...]`, built from the tools'
JSON schemas: each keyword argument is a Python literal that satisfies its property's schema.

Supported schema subset (as in the JSON path): `type` (one or a list), `enum`, `const`, `anyOf` /
`oneOf` (both as a union), local `$ref` (`#/$defs/...`, `#/definitions/...`), strings with
`minLength` / `maxLength`, integers and numbers (bounds via xgrammar's JSON rule for that leaf: JSON
numbers are Python numbers), booleans (True/False), null (None), arrays (`items`, `minItems`,
`maxItems`), objects (`properties` in schema order, `required`; only declared properties when
`properties` is given). Anything else (string `pattern` / `format`, `prefixItems`, `allOf`, ...)
falls back to a generic rule: a string for strings, any Python literal otherwise; such values parse
but are not checked against the unsupported keyword.
"""

from __future__ import annotations

import json
import keyword
import re
from typing import Any, Dict, List, Optional, Sequence

MAX_PARALLEL_CALLS = 4  # as for the JSON families (grammar.py)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ESCAPES = r'"\\" [\"\\\'nrt]'
_GENERIC = r'''
py_any ::= py_str | py_num | "True" | "False" | "None" | py_list | py_dict
py_str ::= py_dq_char_seq | py_sq_char_seq
py_dq_char_seq ::= "\"" py_dq_char* "\""
py_sq_char_seq ::= "'" py_sq_char* "'"
py_dq_char ::= [^\"\\\0-\x1f\ud800-\udfff] | ESC
py_sq_char ::= [^'\\\0-\x1f\ud800-\udfff] | ESC
py_int ::= "-"? ("0" | [1-9] [0-9]*)
py_num ::= py_int ("." [0-9]+)? ([eE] [+\-]? [0-9] [0-9]?)?
py_list ::= "[" (py_any (", " py_any)*)? "]"
py_dict ::= "{" (py_str ": " py_any (", " py_str ": " py_any)*)? "}"
'''.replace("ESC", _ESCAPES)
_BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def pythonic_calls_ebnf(tools: Sequence[Dict[str, Any]], parallel: bool) -> str:
    """A reply that is nothing but a Python list of calls to `tools` (function dicts)."""
    builder = _Builder()
    calls = [builder.call(tool, i) for i, tool in enumerate(tools)]
    more = f'(", " py_call){{0, {MAX_PARALLEL_CALLS - 1}}}' if parallel else ""
    head = [f'root ::= "[" py_call {more} "]"', "py_call ::= " + " | ".join(calls)]
    return "\n".join(head + builder.rules) + "\n" + _GENERIC


def pythonic_auto_ebnf(tools: Sequence[Dict[str, Any]], parallel: bool) -> str:
    """`tool_choice=auto`: free text, or (after leading whitespace) a call list when the reply
    opens with "[" (the call list's only opening marker): text may not start with "[", so such a
    reply is constrained whole."""
    calls = pythonic_calls_ebnf(tools, parallel).replace("root ::= ", "py_calls ::= ", 1)
    return (calls + '\nreply_text ::= "" | [^[ \\t\\n\\r] [^]*'
            + '\nroot ::= [ \\t\\n\\r]* (py_calls | reply_text)\n')


def python_literal(value: Any) -> str:
    """`value` (JSON data) written as a Python literal, double-quoted strings."""
    if isinstance(value, bool) or value is None:
        return {True: "True", False: "False", None: "None"}[value]
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{python_literal(str(k))}: {python_literal(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)  # JSON string and number escapes are Python's too


class _Builder:
    """Collects the rules for one grammar; rule names are numbered so schemas never collide."""

    def __init__(self) -> None:
        self.rules: List[str] = []
        self._count = 0
        self._refs: Dict[str, str] = {}
        self._root: Dict[str, Any] = {}

    def call(self, tool: Dict[str, Any], index: int) -> str:
        name = tool["name"]
        if not _IDENT.match(name) or keyword.iskeyword(name):
            raise ValueError(f"tool name {name!r} is not a Python identifier, so it cannot be called pythonically")
        schema = tool.get("parameters") or {"type": "object"}
        self._root = schema
        props = schema.get("properties") or {}
        for key in props:
            if not _IDENT.match(key) or keyword.iskeyword(key):
                raise ValueError(f"{name}: parameter {key!r} is not a Python identifier, so it cannot be a "
                                 "keyword argument of a pythonic call")
        body = self._members(props, schema.get("required") or [], lambda k: f'"{k}="')
        return f'"{name}(" {body} ")"'

    def _new(self, body: str) -> str:
        self._count += 1
        name = f"py_r{self._count}"
        self.rules.append(f"{name} ::= {body}")
        return name

    def value(self, schema: Any) -> str:
        """The rule (name or inline expression) for a value satisfying `schema`."""
        if not isinstance(schema, dict) or not schema:
            return "py_any"
        if "$ref" in schema:
            return self._ref(schema["$ref"])
        if "const" in schema:
            return _literal(schema["const"])
        if "enum" in schema:
            return "(" + " | ".join(_literal(v) for v in schema["enum"]) + ")"
        union = schema.get("anyOf") or schema.get("oneOf")
        if union:
            return "(" + " | ".join(self.value(s) for s in union) + ")"
        kind = schema.get("type")
        if isinstance(kind, list):
            return "(" + " | ".join(self.value({**schema, "type": k}) for k in kind) + ")"
        return self._typed(kind, schema)

    def _typed(self, kind: Optional[str], schema: Dict[str, Any]) -> str:
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            if any(k in schema for k in _BOUND_KEYS):
                return self._embed_json(schema)
            return "py_int" if kind == "integer" else "py_num"
        if kind == "boolean":
            return '("True" | "False")'
        if kind == "null":
            return '"None"'
        if kind == "array":
            return self._array(schema)
        if kind == "object":
            return self._object(schema)
        return "py_any"

    def _string(self, schema: Dict[str, Any]) -> str:
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if low == 0 and high is None:
            return "py_str"
        reps = f"{{{low}, {int(high) if high is not None else -1}}}"
        return self._new(f'("\\"" py_dq_char{reps} "\\"") | ("\'" py_sq_char{reps} "\'")')

    def _array(self, schema: Dict[str, Any]) -> str:
        item = self.value(schema.get("items"))
        low, high = int(schema.get("minItems", 0)), schema.get("maxItems")
        if high is not None and int(high) == 0:
            return '"[" "]"'
        rest = f'(", " {item}){{{max(low - 1, 0)}, {int(high) - 1 if high is not None else -1}}}'
        filled = f'"[" {item} {rest} "]"'
        return self._new(filled if low > 0 else f'{filled} | "[" "]"')

    def _object(self, schema: Dict[str, Any]) -> str:
        props = schema.get("properties")
        if not props:
            return "py_dict"
        body = self._members(props, schema.get("required") or [], lambda k: f"{_literal(k)} \": \"")
        return self._new(f'"{{" {body} "}}"')

    def _members(self, props: Dict[str, Any], required: Sequence[str], key: Any) -> str:
        """Properties in order, required ones always present, ", " between those written:
        rule (i, started) writes properties i.. given whether one was written before."""
        names = list(props)
        after: Dict[bool, str] = {False: '""', True: '""'}
        for i in range(len(names) - 1, -1, -1):
            item = f"{key(names[i])} {self.value(props[names[i]])}"
            skip = names[i] not in required
            fresh = f"{item} {after[True]}" + (f" | {after[False]}" if skip else "")
            cont = f'", " {item} {after[True]}' + (f" | {after[True]}" if skip else "")
            after = {False: self._new(fresh), True: self._new(cont)}
        return after[False]

    def _ref(self, ref: str) -> str:
        if ref in self._refs:
            return self._refs[ref]
        target: Any = self._root
        if not ref.startswith("#/"):
            return "py_any"
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                return "py_any"
            target = target[part]
        self._count += 1
        name = self._refs[ref] = f"py_r{self._count}"
        self.rules.append(f"{name} ::= {self.value(target)}")  # recursion is fine: the name exists
        return name

    def _embed_json(self, schema: Dict[str, Any]) -> str:
        """xgrammar's JSON rule for a number leaf (its text is a Python literal too), renamed."""
        import xgrammar as xgr

        self._count += 1
        prefix = f"py_j{self._count}_"
        text = str(xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False))
        lines = [line for line in text.strip().splitlines() if " ::= " in line]
        defined = {line.split(" ::= ", 1)[0] for line in lines}
        self.rules.extend(_rename(line, defined, prefix) for line in lines)
        return prefix + "root"


def _literal(value: Any) -> str:
    return json.dumps(python_literal(value), ensure_ascii=False)


def _rename(line: str, defined: set, prefix: str) -> str:
    """Prefix every reference to a rule in `defined`, skipping string literals and char classes."""
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c in "\"[":
            close = '"' if c == '"' else "]"
            j = i + 1
            while j < len(line) and line[j] != close:
                j += 2 if line[j] == "\\" else 1
            out.append(line[i:j + 1])
            i = j + 1
            continue
        match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", line[i:])
        if match:
            word = match.group(0)
            out.append(prefix + word if word in defined else word)
            i += len(word)
            continue
        out.append(c)
        i += 1
    return "".join(out)
