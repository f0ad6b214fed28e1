"""JSON schema -> regex translator and the bounded-number regexes it relies on."""

from __future__ import annotations

import datetime
import itertools
import json
import re
from decimal import Decimal
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sglang.runtime.constrained.json_schema_regex import json_schema_to_regex
from sglang.runtime.constrained.json_string_pattern import json_string_content
from sglang.runtime.constrained.numeric_regex import integer_range_regex, number_range_regex
from sglang.runtime.constrained.string_formats import FORMAT_PATTERNS

# ------------------------------------------------------------------ numbers

_bound = st.one_of(st.none(), st.integers(-3000, 3000))


@settings(max_examples=150, deadline=None)
@given(lo=_bound, hi=_bound, probes=st.lists(st.integers(-5000, 5000), min_size=20, max_size=40))
def test_integer_range_is_exact(lo: Optional[int], hi: Optional[int], probes: list) -> None:
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    pattern = re.compile(integer_range_regex(lo, hi))
    for value in probes + [v for v in (lo, hi) if v is not None] + [0, -1, 1]:
        inside = (lo is None or value >= lo) and (hi is None or value <= hi)
        assert bool(pattern.fullmatch(str(value))) == inside, (lo, hi, value)
    for spelling in ("01", "-0", "+1", "1.0", ""):
        assert not pattern.fullmatch(spelling)


_decimal_bound = st.one_of(
    st.none(), st.decimals(min_value=-200, max_value=200, places=3, allow_nan=False, allow_infinity=False)
)
_probe = st.decimals(min_value=-300, max_value=300, places=4, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(lo=_decimal_bound, hi=_decimal_bound, lo_ex=st.booleans(), hi_ex=st.booleans(),
       probes=st.lists(_probe, min_size=20, max_size=40))
def test_number_range_is_exact(lo, hi, lo_ex: bool, hi_ex: bool, probes: list) -> None:
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    if lo is not None and hi is not None and lo == hi and (lo_ex or hi_ex):
        with pytest.raises(ValueError, match="empty number range"):
            number_range_regex(float(lo), float(hi), lo_ex, hi_ex)
        return
    pattern = re.compile(number_range_regex(None if lo is None else float(lo), None if hi is None else float(hi), lo_ex, hi_ex))
    extra = [b for b in (lo, hi) if b is not None]
    for value in probes + extra + [Decimal(0)]:
        for text in {format(value, "f"), format(value.normalize(), "f"), format(value, "f") + "0"}:
            if text.startswith("-") and Decimal(text) == 0 or re.match(r"-?0[0-9]", text):
                continue  # "-0.0" and leading zeros are not canonical spellings
            v = Decimal(text)
            inside = (lo is None or (v > lo if lo_ex else v >= lo)) and (hi is None or (v < hi if hi_ex else v <= hi))
            assert bool(pattern.fullmatch(text)) == inside, (lo, hi, lo_ex, hi_ex, text)


def test_unbounded_number_is_json_number_grammar() -> None:
    pattern = re.compile(number_range_regex(None, None))
    for good in ("0", "-0.5", "12e10", "3.25E-7", "1e+2"):
        assert pattern.fullmatch(good)
    for bad in ("01", ".5", "1.", "+1", "1e", "--1"):
        assert not pattern.fullmatch(bad)


# ------------------------------------------------------------------ objects, arrays, strings


def _matches(schema: dict, text: str, ws: Optional[str] = None) -> bool:
    return re.fullmatch(json_schema_to_regex(json.dumps(schema), ws), text) is not None


def test_optional_properties_in_order_with_correct_commas() -> None:
    names = ["a", "b", "c"]
    schema = {"type": "object", "properties": {n: {"type": "integer", "maximum": 9} for n in names}}
    for k in range(4):
        for subset in itertools.combinations(names, k):
            present = {n: 1 for n in subset}
            assert _matches(schema, json.dumps(present, separators=(",", ":")), ws="")
    assert not _matches(schema, '{"b":1,"a":1}', ws="")  # order is the schema's
    assert not _matches(schema, '{"a":1,}', ws="")
    assert not _matches(schema, '{,"a":1}', ws="")


def test_required_properties_cannot_be_skipped() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "null"}}, "required": ["b"]}
    assert _matches(schema, '{"a":null,"b":null}', ws="")
    assert _matches(schema, '{"b":null}', ws="")
    assert not _matches(schema, '{"a":null}', ws="")
    assert not _matches(schema, "{}", ws="")


def test_whitespace_pattern_is_honoured() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "boolean"}}}, "required": ["a"]}
    assert _matches(schema, '{"a":[true,false]}', ws="")
    assert not _matches(schema, '{"a": [true]}', ws="")
    assert _matches(schema, '{ "a" : [ true , false ] }')  # default: one optional space
    assert not _matches(schema, '{  "a":[true]}')
    assert _matches(schema, '{\n  "a": [\n    true\n  ]\n}', ws=r"[\n ]*")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-20, 120), max_size=6))
def test_array_bounds(items: list) -> None:
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 2, "maxItems": 4}
    valid = 2 <= len(items) <= 4 and all(0 <= i <= 99 for i in items)
    assert _matches(schema, json.dumps(items)) == valid


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=8))
def test_strings_with_length_bounds_and_escapes(text: str) -> None:
    schema = {"type": "string", "minLength": 1, "maxLength": 5}
    spelled = json.dumps(text, ensure_ascii=False)  # controls come out escaped (\\n, \\u0001)
    assert _matches(schema, spelled) == (1 <= len(text) <= 5)
    assert not _matches({"type": "string"}, '"a\nb"')  # a raw control character is not JSON


def test_enum_const_anyof_refs_and_unicode() -> None:
    assert _matches({"enum": ["東京", 1, None, {"k": [1]}]}, '"東京"')
    assert _matches({"enum": ["東京", 1, None, {"k": [1]}]}, '{"k":[1]}')
    assert not _matches({"enum": ["a", "b"]}, '"c"')
    assert _matches({"const": "x\"y"}, json.dumps("x\"y"))
    schema = {"anyOf": [{"type": "integer", "maximum": 3}, {"type": "null"}]}
    assert _matches(schema, "null") and _matches(schema, "-7") and not _matches(schema, "4")
    ref = {"$defs": {"p": {"type": "boolean"}}, "type": "object", "properties": {"x": {"$ref": "#/$defs/p"}},
           "required": ["x"]}
    assert _matches(ref, '{"x":true}', ws="") and not _matches(ref, '{"x":1}', ws="")


def test_generic_object_accepts_nested_values() -> None:
    assert _matches({"type": "object"}, '{"a": [1, null], "c": {"d": "e"}}')
    assert not _matches({"type": "object"}, "[1]")
    # Unconstrained values nest at most GENERIC_DEPTH levels (a regex cannot count brackets).
    assert not _matches({"type": "object"}, '{"a": [[[1]]]}')


@pytest.mark.parametrize("pattern", [r"^[^,]+$", r".{2,}", r"\S+", r"[^\]]\W"])
def test_string_patterns_never_produce_unescaped_json(pattern: str) -> None:
    regex = re.compile(json_string_content(pattern))
    matched = 0
    for text in ("ab", "a b", "é!", 'a"b', '"', "a\\b", "a\nb", "x\x01", "]é!"):
        if regex.fullmatch(text):
            assert json.loads(f'"{text}"') == text and re.search(pattern, text)
            matched += 1
    assert matched >= 1


def test_string_pattern_naming_a_quote_is_rejected() -> None:
    with pytest.raises(ValueError, match="admits the character '\"'"):
        json_string_content('say "hi"')


def test_date_format_knows_month_lengths_and_leap_years() -> None:
    date = re.compile(FORMAT_PATTERNS["date"])
    for year in (1900, 2000, 2023, 2024):
        for month in range(1, 13):
            for day in range(1, 32):
                try:
                    datetime.date(year, month, day)
                    real = True
                except ValueError:
                    real = False
                assert bool(date.fullmatch(f"{year:04d}-{month:02d}-{day:02d}")) == real


@pytest.mark.parametrize(
    "schema,message",
    [
        ("{bad", "not valid JSON"),
        ('{"type": "foo"}', "invalid JSON schema"),
        ('{"type": "array", "items": {"type": "integer"}, "uniqueItems": true}', "uniqueItems"),
        ('{"$ref": "#/$defs/missing"}', "does not resolve"),
        ('{"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}', "recursive"),
        ('{"type": "string", "pattern": "[a-z]+", "maxLength": 3}', "pattern and minLength/maxLength"),
        ('{"type": "integer", "minimum": 5, "maximum": 2}', "empty integer range"),
        ('{"type": "string", "pattern": "(ab"}', "is not a 'regex'"),
    ],
)
def test_untranslatable_schemas_raise_value_error(schema: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        json_schema_to_regex(schema)


def test_bad_whitespace_pattern_is_reported() -> None:
    with pytest.raises(ValueError, match="whitespace-pattern"):
        json_schema_to_regex('{"type": "null"}', "[ ")
