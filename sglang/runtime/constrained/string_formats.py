"""Regexes for JSON-schema string formats, exact enough that every match is a real value.

A date regex must know month lengths and leap years: "2023-11-31" or "2023-02-29" match a naive
[0-3][0-9] day but are not dates. Both backends use this table (xgrammar's own `format: date`
admits such days, so its schemas get these as `pattern`s; see `with_format_patterns`).
"""

from __future__ import annotations

from typing import Any, Dict

_YEAR = r"(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"  # 0001-9999 (no year 0)
_LEAP_YEAR = r"([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])"  # 31-day months
    r"|(0[469]|11)-(0[1-9]|[12][0-9]|30)"  # 30-day months
    r"|02-(0[1-9]|1[0-9]|2[0-8]))"  # February, any year
)
_DATE = rf"({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"

FORMAT_PATTERNS: Dict[str, str] = {
    "date": _DATE,
    "time": _TIME,
    "date-time": f"{_DATE}T{_TIME}",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "email": r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}",
    "ipv4": rf"({_OCTET}\.){{3}}{_OCTET}",
}


def with_format_patterns(schema: Any) -> Any:
    """A copy of `schema` where string formats we know become anchored `pattern`s.

    Subschemas that already have a pattern or length bounds keep their format untouched."""
    if isinstance(schema, list):
        return [with_format_patterns(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: with_format_patterns(value) for key, value in schema.items()}
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in FORMAT_PATTERNS and not {"pattern", "minLength", "maxLength"} & set(schema):
        out["pattern"] = f"^{FORMAT_PATTERNS[fmt]}$"
        del out["format"]  # xgrammar prefers its own (looser) format rule over a pattern
    return out
