"""Regexes for bounded JSON numbers: exactly the canonical decimals inside [lo, hi].

Canonical means JSON's own spelling without exponent: no leading zeros, optional minus, optional
fraction. Bounds may be exclusive and non-integer (minimum 0.5, exclusiveMaximum 10). The
construction is digit by digit: while the digits written so far equal a bound's digits the
output is "tight" against it and the next digit is limited; once below/above it, anything goes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import List, Optional, Tuple

ANY_DIGITS = "[0-9]"
UNBOUNDED_INTEGER = r"(0|-?[1-9][0-9]*)"
UNBOUNDED_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
_ANY_FRACTION = r"(\.[0-9]+)?"


def _alt(parts: List[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def _digit_class(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def _any(count: int) -> str:
    return "" if count == 0 else ANY_DIGITS if count == 1 else f"{ANY_DIGITS}{{{count}}}"


# -------------------------------------------------------------------- integers


def _same_length(lo: str, hi: str) -> str:
    """Digit strings of len(lo) == len(hi) between lo and hi (leading zeros allowed)."""
    if lo == hi:
        return lo
    if len(lo) == 1:
        return _digit_class(int(lo), int(hi))
    if lo[0] == hi[0]:
        return lo[0] + _same_length(lo[1:], hi[1:])
    rest = len(lo) - 1
    low_full, high_full = set(lo[1:]) == {"0"}, set(hi[1:]) == {"9"}
    parts: List[str] = []
    start, end = int(lo[0]), int(hi[0])
    if not low_full:
        parts.append(lo[0] + _same_length(lo[1:], "9" * rest))
        start += 1
    middle_end = end if high_full else end - 1
    if start <= middle_end:
        parts.append(_digit_class(start, middle_end) + _any(rest))
    if not high_full:
        parts.append(hi[0] + _same_length("0" * rest, hi[1:]))
    return _alt(parts)


def _natural_range(lo: int, hi: Optional[int]) -> str:
    """Canonical non-negative integers in [lo, hi]; hi None = unbounded."""
    if hi is None:
        digits = len(str(lo))
        longer = f"[1-9]{ANY_DIGITS}{{{digits},}}"  # every number with more digits than lo
        return _alt([_natural_range(lo, 10**digits - 1), longer])
    parts = []
    for length in range(len(str(lo)), len(str(hi)) + 1):
        start = max(lo, 10 ** (length - 1) if length > 1 else 0)
        end = min(hi, 10**length - 1)
        parts.append(_same_length(str(start), str(end)))
    return _alt(parts)


def integer_range_regex(lo: Optional[int], hi: Optional[int]) -> str:
    """Canonical integers in [lo, hi] (inclusive; None = unbounded on that side)."""
    if lo is None and hi is None:
        return UNBOUNDED_INTEGER
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"empty integer range: minimum {lo} > maximum {hi}")
    parts = []
    if lo is None or lo < 0:  # negative values, by magnitude
        top = None if lo is None else -lo
        bottom = 1 if hi is None or hi >= 0 else -hi
        parts.append("-" + _natural_range(bottom, top))
    if hi is None or hi >= 0:
        parts.append(_natural_range(0 if lo is None else max(lo, 0), hi))
    return _alt(parts)


# -------------------------------------------------------------------- fractions


def _split(value: Decimal) -> Tuple[int, str]:
    """A non-negative decimal as (integer part, fraction digits without trailing zeros)."""
    whole = int(value)
    text = format(value - whole, "f")
    digits = text.split(".")[1].rstrip("0") if "." in text else ""
    return whole, digits


class _Fraction:
    """Fraction digit strings D with lo <= 0.D <= hi (bounds as digit strings; None = open)."""

    def __init__(self, lo: Optional[str], lo_strict: bool, hi: Optional[str], hi_strict: bool):
        self.lo, self.lo_strict = lo or "", lo_strict
        self.hi, self.hi_strict = hi or "", hi_strict
        self.has_lo, self.has_hi = lo is not None, hi is not None

    def suffix(self) -> Optional[str]:
        """'' or r'\\.D' as a regex; None if no fraction fits."""
        parts = []
        if self._may_end(0, self.has_lo, self.has_hi):
            parts.append("")
        digits = self._digits(0, self.has_lo, self.has_hi, nonempty=True)
        if digits is not None:
            parts.append(r"\." + digits)
        if not parts:
            return None
        return "" if parts == [""] else _alt(parts)

    def _may_end(self, pos: int, tight_lo: bool, tight_hi: bool) -> bool:
        lower_ok = not tight_lo or (pos >= len(self.lo) and not self.lo_strict)
        upper_ok = not tight_hi or pos < len(self.hi) or not self.hi_strict
        return lower_ok and upper_ok

    def _closed(self, tight_lo: bool, tight_hi: bool, nonempty: bool) -> Optional[str]:
        """Past every tight bound's digits: the bound continues with zeros only."""
        star = "+" if nonempty else "*"
        if tight_lo and tight_hi:
            return None if self.lo_strict or self.hi_strict else "0" + star
        if tight_lo:
            return f"{ANY_DIGITS}*[1-9]{ANY_DIGITS}*" if self.lo_strict else ANY_DIGITS + star
        return None if self.hi_strict else "0" + star

    def _digits(self, pos: int, tight_lo: bool, tight_hi: bool, nonempty: bool) -> Optional[str]:
        if not tight_lo and not tight_hi:
            return ANY_DIGITS + ("+" if nonempty else "*")
        past_lo = not tight_lo or pos >= len(self.lo)
        past_hi = not tight_hi or pos >= len(self.hi)
        if past_lo and past_hi:
            return self._closed(tight_lo, tight_hi, nonempty)
        low = int(self.lo[pos]) if tight_lo and pos < len(self.lo) else 0
        high = (int(self.hi[pos]) if pos < len(self.hi) else 0) if tight_hi else 9
        parts: List[Optional[str]] = []
        if not nonempty and self._may_end(pos, tight_lo, tight_hi):
            parts.append("")
        if tight_lo and tight_hi and low == high:
            parts.append(self._then(str(low), pos, True, True))
        else:
            start, end = low, high
            if tight_lo:
                parts.append(self._then(str(low), pos, True, False))
                start += 1
            if tight_hi:
                parts.append(self._then(str(high), pos, False, True))
                end -= 1
            if start <= end:
                parts.append(_digit_class(start, end) + ANY_DIGITS + "*")
        found = [p for p in parts if p is not None]
        return _alt(found) if found else None

    def _then(self, digit: str, pos: int, tight_lo: bool, tight_hi: bool) -> Optional[str]:
        rest = self._digits(pos + 1, tight_lo, tight_hi, nonempty=False)
        return None if rest is None else digit + rest


# -------------------------------------------------------------------- numbers


def _nonnegative(lo: Decimal, lo_strict: bool, hi: Optional[Decimal], hi_strict: bool) -> Optional[str]:
    """Canonical non-negative decimals x with lo <(=) x <(=) hi."""
    if hi is not None and (lo > hi or (lo == hi and (lo_strict or hi_strict))):
        return None
    lo_int, lo_frac = _split(lo)
    parts: List[Optional[str]] = []
    if hi is None:
        parts.append(_with_suffix(str(lo_int), _Fraction(lo_frac, lo_strict, None, False)))
        parts.append(_natural_range(lo_int + 1, None) + _ANY_FRACTION)
        return _alt([p for p in parts if p is not None])
    hi_int, hi_frac = _split(hi)
    if lo_int == hi_int:
        parts.append(_with_suffix(str(lo_int), _Fraction(lo_frac, lo_strict, hi_frac, hi_strict)))
    else:
        parts.append(_with_suffix(str(lo_int), _Fraction(lo_frac, lo_strict, None, False)))
        if lo_int + 1 <= hi_int - 1:
            parts.append(_natural_range(lo_int + 1, hi_int - 1) + _ANY_FRACTION)
        parts.append(_with_suffix(str(hi_int), _Fraction(None, False, hi_frac, hi_strict)))
    found = [p for p in parts if p is not None]
    return _alt(found) if found else None


def _with_suffix(integer: str, fraction: _Fraction) -> Optional[str]:
    suffix = fraction.suffix()
    return None if suffix is None else integer + suffix


def number_range_regex(
    lo: Optional[float], hi: Optional[float], lo_exclusive: bool = False, hi_exclusive: bool = False
) -> str:
    """Canonical JSON numbers in the range (no exponent once bounded); raise if it is empty."""
    if lo is None and hi is None:
        return UNBOUNDED_NUMBER
    dlo = None if lo is None else Decimal(str(lo))
    dhi = None if hi is None else Decimal(str(hi))
    parts: List[Optional[str]] = []
    if dlo is None or dlo < 0:  # negatives by magnitude: -hi .. -lo, never "-0"
        m_lo, m_lo_strict = (-dhi, hi_exclusive) if dhi is not None and dhi < 0 else (Decimal(0), True)
        magnitude = _nonnegative(m_lo, m_lo_strict, None if dlo is None else -dlo, lo_exclusive)
        parts.append(None if magnitude is None else "-" + magnitude)
    if dhi is None or dhi >= 0:
        start, strict = (Decimal(0), False) if dlo is None or dlo < 0 else (dlo, lo_exclusive)
        parts.append(_nonnegative(start, strict, dhi, hi_exclusive))
    found = [p for p in parts if p is not None]
    if not found:
        raise ValueError(f"empty number range: no number satisfies the bounds ({lo}, {hi})")
    return _alt(found)
