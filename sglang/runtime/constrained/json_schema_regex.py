"""JSON schema -> regex, for the fsm grammar backend.

Every string the regex matches is valid under the schema (soundness first); it may match fewer
strings than the schema allows:
- object properties appear in schema order; keys not listed in `properties` are never produced;
- generic values (`{}`, `{"type": "object"}` without properties) nest at most GENERIC_DEPTH deep;
- `oneOf` is treated as `anyOf` (exclusivity is not checked);
- a string `pattern` is generated as a full match of the pattern (anchors dropped), narrowed so
  that it never produces characters JSON must escape (see json_string_pattern.py).
Features a regex cannot express raise ValueError naming them (uniqueItems, recursive $ref,
pattern together with length bounds, ...): use the xgrammar backend for those.

Whitespace between JSON tokens follows `whitespace_pattern`. DEFAULT_WHITESPACE_PATTERN, `[ ]?`,
allows at most one space at each spot: models may keep the spacing they like ('{"a": 1}') while
outputs stay short and a random or degenerate model cannot stall in endless whitespace (which
`[\\n\\t ]*` would allow).
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional, Tuple, Union

from sglang.runtime.constrained.json_string_pattern import json_string_content
from sglang.runtime.constrained.numeric_regex import integer_range_regex, number_range_regex
from sglang.runtime.constrained.string_formats import FORMAT_PATTERNS

DEFAULT_WHITESPACE_PATTERN = r"[ ]?"
GENERIC_DEPTH = 2  # nesting levels of arrays/objects inside an unconstrained JSON value
MAX_REF_DEPTH = 8
# One JSON string character: anything but '"', '\' and controls, or an escape. \u escapes skip
# surrogates, which would pair up into one character and break length bounds.
STRING_CHAR = r'([^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u([0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))'
STRING = f'"{STRING_CHAR}*"'
_REGEX_SPECIAL = set("\\.^$|?*+()[]{}")


def escape_literal(text: str) -> str:
    """Escape regex metacharacters only (re.escape output is not understood by every engine)."""
    return "".join("\\" + ch if ch in _REGEX_SPECIAL else ch for ch in text)


def json_literal(value: Any) -> str:
    """Regex for one JSON value spelled compactly (unicode kept, so tokenizers see real text)."""
    return escape_literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _alt(parts: List[str]) -> str:
    unique = list(dict.fromkeys(parts))
    return unique[0] if len(unique) == 1 else "(" + "|".join(unique) + ")"


def load_schema(schema: Union[str, Dict[str, Any], bool]) -> Union[Dict[str, Any], bool]:
    """Parse and check a JSON schema; ValueError says what is wrong."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ValueError(f"json_schema is not valid JSON: {exc}") from None
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"a JSON schema must be an object or a boolean, got {type(schema).__name__}")
    try:
        import jsonschema  # optional: without it the schema itself is not meta-validated
    except ImportError:
        return schema
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise ValueError(f"invalid JSON schema at {where}: {exc.message}") from None
    return schema


def json_schema_to_regex(schema: Union[str, Dict[str, Any], bool], whitespace_pattern: Optional[str] = None) -> str:
    """A regex whose matches are JSON texts valid under `schema` (see the module notes)."""
    ws = DEFAULT_WHITESPACE_PATTERN if whitespace_pattern is None else whitespace_pattern
    try:
        re.compile(ws)
    except re.error as exc:
        raise ValueError(f"invalid --constrained-json-whitespace-pattern {ws!r}: {exc}") from None
    root = load_schema(schema)
    return _Translator(root, f"({ws})" if ws else "").value(root, ref_depth=0)


class _Translator:
    def __init__(self, root: Union[Dict[str, Any], bool], ws: str):
        self.root = root
        self.ws = ws

    # ---------------------------------------------------------------- dispatch
    def value(self, schema: Union[Dict[str, Any], bool], ref_depth: int) -> str:
        if schema is True or schema == {}:
            return self.generic(GENERIC_DEPTH)
        if schema is False:
            raise ValueError("the schema is `false` here: no value is valid, so nothing can be generated")
        if "$ref" in schema:
            return self.value(self._resolve(schema, ref_depth), ref_depth + 1)
        if "const" in schema:
            return json_literal(schema["const"])
        if "enum" in schema:
            if not schema["enum"]:
                raise ValueError("enum is empty: no value is valid")
            return _alt([json_literal(v) for v in schema["enum"]])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return _alt([self.value(sub, ref_depth) for sub in schema[key]])
        if "allOf" in schema:
            return self.value(self._merge_all_of(schema, ref_depth), ref_depth)
        return self._typed(schema, ref_depth)

    def _typed(self, schema: Dict[str, Any], ref_depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            return _alt([self._typed({**schema, "type": k}, ref_depth) for k in kind])
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        handlers = {
            "object": lambda: self.object(schema, ref_depth),
            "array": lambda: self.array(schema, ref_depth),
            "string": lambda: self.string(schema),
            "integer": lambda: self.integer(schema),
            "number": lambda: self.number(schema),
            "boolean": lambda: "(true|false)",
            "null": lambda: "null",
        }
        if kind is None:
            return self.generic(GENERIC_DEPTH)
        if kind not in handlers:
            raise ValueError(f"unknown JSON schema type {kind!r}; expected one of {', '.join(handlers)}")
        return handlers[kind]()

    def _resolve(self, schema: Dict[str, Any], ref_depth: int) -> Dict[str, Any]:
        ref = schema["$ref"]
        if ref_depth >= MAX_REF_DEPTH:
            raise ValueError(
                f"$ref {ref!r} nests deeper than {MAX_REF_DEPTH} levels (recursive schema); recursion is "
                f"not regular: use --grammar-backend xgrammar"
            )
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref ('#/...') is supported, got {ref!r}")
        target: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"$ref {ref!r} does not resolve: no {part!r} in the schema")
            target = target[part]
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        return {**target, **extra} if isinstance(target, dict) and extra else target

    def _merge_all_of(self, schema: Dict[str, Any], ref_depth: int) -> Dict[str, Any]:
        merged: Dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            if isinstance(sub, dict) and "$ref" in sub:
                sub = self._resolve(sub, ref_depth)
            if not isinstance(sub, dict):
                raise ValueError("allOf entries must be schema objects")
            for key, val in sub.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **val}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged.get("required", []), *val]))
                elif key in merged and merged[key] != val:
                    raise ValueError(f"allOf with conflicting {key!r} values cannot be translated to a regex")
                else:
                    merged[key] = val
        return merged

    # ---------------------------------------------------------------- scalars
    def string(self, schema: Dict[str, Any]) -> str:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            if "minLength" in schema or "maxLength" in schema:
                raise ValueError("a string with both pattern and minLength/maxLength is not supported by the fsm backend")
            return f'"{json_string_content(schema["pattern"])}"'
        fmt = schema.get("format")
        if fmt in FORMAT_PATTERNS and not ("minLength" in schema or "maxLength" in schema):
            return f'"{FORMAT_PATTERNS[fmt]}"'
        if lo == 0 and hi is None:
            return STRING
        return f'"{STRING_CHAR}{{{lo},{"" if hi is None else hi}}}"'

    def integer(self, schema: Dict[str, Any]) -> str:
        (lo, lo_ex), (hi, hi_ex) = _bounds(schema)
        ilo = None if lo is None else (int(lo) + 1 if lo_ex and lo == int(lo) else _ceil(lo))
        ihi = None if hi is None else (int(hi) - 1 if hi_ex and hi == int(hi) else _floor(hi))
        return integer_range_regex(ilo, ihi)

    def number(self, schema: Dict[str, Any]) -> str:
        (lo, lo_ex), (hi, hi_ex) = _bounds(schema)
        return number_range_regex(lo, hi, lo_ex, hi_ex)

    # ---------------------------------------------------------------- containers
    def object(self, schema: Dict[str, Any], ref_depth: int) -> str:
        ws = self.ws
        properties = dict(schema.get("properties", {}))
        required = list(schema.get("required", []))
        for name in required:
            properties.setdefault(name, {})  # required but undescribed: any value
        if not properties:
            extra = schema.get("additionalProperties", True)
            value = self.generic(GENERIC_DEPTH - 1) if extra is True or extra == {} else self.value(extra, ref_depth)
            if extra is False:
                return rf"\{{{ws}\}}"
            counts = (schema.get("minProperties", 0), schema.get("maxProperties"))
            return self._sequence(r"\{", rf"{STRING}{ws}:{ws}{value}", r"\}", counts)
        pieces = [
            (rf"{json_literal(name)}{ws}:{ws}{self.value(sub, ref_depth)}", name in required)
            for name, sub in properties.items()
        ]
        return rf"\{{{ws}{self._object_body(pieces)}{ws}\}}"

    def _object_body(self, pieces: List[Tuple[str, bool]]) -> str:
        """Properties in order; optional ones may be absent, commas only between present ones."""
        sep = f"{self.ws},{self.ws}"
        alternatives = []
        for first, (piece, required) in enumerate(pieces):
            rest = "".join(sep + p if req else f"({sep}{p})?" for p, req in pieces[first + 1:])
            alternatives.append(piece + rest)
            if required:
                break  # a required property must be present, so nothing after it can come first
        body = _alt(alternatives)
        return body if any(req for _, req in pieces) else f"({body})?"

    def array(self, schema: Dict[str, Any], ref_depth: int) -> str:
        if schema.get("uniqueItems"):
            raise ValueError("uniqueItems cannot be expressed as a regex; use --grammar-backend xgrammar")
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if prefix is None and isinstance(items, list):
            prefix, items = items, schema.get("additionalItems", False)
        if prefix is not None:
            return self._tuple(prefix, schema)
        item = self.generic(GENERIC_DEPTH - 1) if items in (None, True, {}) else self.value(items, ref_depth)
        counts = (schema.get("minItems", 0), schema.get("maxItems"))
        return self._sequence(r"\[", item, r"\]", counts)

    def _tuple(self, prefix: List[Any], schema: Dict[str, Any]) -> str:
        if schema.get("minItems", 0) > len(prefix):
            raise ValueError("minItems larger than the number of prefixItems is not supported by the fsm backend")
        sep = f"{self.ws},{self.ws}"
        body = sep.join(self.value(sub, 0) for sub in prefix)
        return rf"\[{self.ws}{body}{self.ws}\]"

    def _sequence(self, open_: str, item: str, close: str, counts: Tuple[int, Optional[int]]) -> str:
        lo, hi = counts
        if hi is not None and lo > hi:
            raise ValueError(f"minimum count {lo} exceeds maximum count {hi}: no value is valid")
        ws, sep = self.ws, f"{self.ws},{self.ws}"
        if hi == 0:
            return rf"{open_}{ws}{close}"
        more = f"({sep}{item}){{{max(lo - 1, 0)},{'' if hi is None else hi - 1}}}"
        body = item + more
        return f"{open_}{ws}{body if lo > 0 else f'({body})?'}{ws}{close}"

    def generic(self, depth: int) -> str:
        """Any JSON value with at most `depth` levels of nesting below it."""
        scalars = [STRING, number_range_regex(None, None), "true", "false", "null"]
        if depth <= 0:
            return _alt(scalars)
        inner = self.generic(depth - 1)
        array = self._sequence(r"\[", inner, r"\]", (0, None))
        obj = self._sequence(r"\{", rf"{STRING}{self.ws}:{self.ws}{inner}", r"\}", (0, None))
        return _alt([*scalars, array, obj])


# -------------------------------------------------------------------- helpers


def _bounds(schema: Dict[str, Any]) -> Tuple[Tuple[Optional[float], bool], Tuple[Optional[float], bool]]:
    """((lower, exclusive), (upper, exclusive)) from draft-4 (boolean) or draft-6+ (numeric) keys."""
    lo, hi = schema.get("minimum"), schema.get("maximum")
    ex_lo, ex_hi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    lower = (lo, bool(ex_lo)) if isinstance(ex_lo, bool) or ex_lo is None else _tighter(lo, ex_lo, max)
    upper = (hi, bool(ex_hi)) if isinstance(ex_hi, bool) or ex_hi is None else _tighter(hi, ex_hi, min)
    return lower, upper


def _tighter(inclusive: Optional[float], exclusive: float, pick: Any) -> Tuple[float, bool]:
    """The tighter of an inclusive and a numeric exclusive bound (`pick` is max for lower bounds)."""
    if inclusive is None or pick(inclusive, exclusive) == exclusive:
        return exclusive, True
    return inclusive, False


def _ceil(value: float) -> int:
    return int(value) if value == int(value) or value < 0 else int(value) + 1


def _floor(value: float) -> int:
    return int(value) if value == int(value) or value > 0 else int(value) - 1
