"""Grammars written in Lark's own syntax, translated to the GBNF dialect the lark backend serves.

lark itself loads the grammar (imports such as `%import common.NUMBER`, templates, `?rule`
inlining, EBNF operators) into plain BNF rules over terminals whose patterns are Python regexes.
Each rule becomes an EBNF rule, each terminal an EBNF rule whose body is its regex translated
construct by construct (literals, classes, alternation, groups, repetition). What a character-
level grammar cannot express is refused with the reason: anchors, lookarounds, backreferences.

Semantics differ from lark's lexer in one documented way: the grammar is analysed at character
level, so terminal priorities and longest-match lexing do not disambiguate; an ambiguity between
adjacent terminals shows up as an LALR conflict (HTTP 400) instead. `%ignore`d terminals may
appear at the start and after any terminal (what lark's lexer allows between tokens).
"""

from __future__ import annotations

import re
import zlib
from typing import Iterable, List, Tuple

try:  # Python 3.11+ moved the regex parser
    import re._parser as _sre  # type: ignore[import-not-found]
    from re._constants import MAXREPEAT  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older Pythons
    import sre_parse as _sre  # type: ignore[no-redef]
    from sre_constants import MAXREPEAT  # type: ignore[no-redef]

_MAX_CP = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
# ASCII meanings of the regex classes (Python's str patterns are Unicode-wide; a model's JSON or
# code output wants the ASCII ones, and a character-level grammar stays small).
_CATEGORIES = {
    "CATEGORY_DIGIT": ((48, 57),),
    "CATEGORY_SPACE": ((9, 13), (32, 32)),
    "CATEGORY_WORD": ((48, 57), (65, 90), (95, 95), (97, 122)),
}
_IGNORED_RULE = "lark-ignored"
_ROOT = "root"


class LarkSyntaxError(ValueError):
    """A Lark grammar that cannot be loaded or translated; the message names line and column."""


def lark_to_ebnf(text: str) -> str:
    """GBNF text (root rule `root`) equivalent to the Lark grammar `text` at character level."""
    from lark import Lark
    from lark.exceptions import LarkError

    try:
        parser = Lark(text, parser="earley", lexer="dynamic")
    except LarkError as exc:
        raise LarkSyntaxError(_located(str(exc), text)) from None
    start = parser.options.start[0]
    ignored = list(parser.ignore_tokens)
    # Ignored text is attached to the terminal before it (and the start): deciding where it belongs
    # then never needs to look past it, which keeps the grammar LALR(1) at character level.
    lines = [f"{_ROOT} ::= " + (f"{_IGNORED_RULE} " if ignored else "") + _rule(start)]
    by_origin: dict = {}
    for rule in parser.rules:
        by_origin.setdefault(rule.origin.name, []).append(rule.expansion)
    suffix = f" {_IGNORED_RULE}" if ignored else ""
    for name, expansions in by_origin.items():
        alts = [" ".join((_term(s.name) + suffix) if s.is_term else _rule(s.name) for s in exp) or '""'
                for exp in expansions]
        lines.append(f"{_rule(name)} ::= " + " | ".join(f"( {a} )" for a in alts))
    for terminal in parser.terminals:
        try:
            body = regex_to_ebnf(terminal.pattern.to_regexp(), terminal.pattern.flags)
        except LarkSyntaxError as exc:
            raise LarkSyntaxError(f"Lark grammar error: terminal {terminal.name}: {exc}") from None
        lines.append(f"{_term(terminal.name)} ::= {body}")
    if ignored:
        patterns = {t.name: t.pattern for t in parser.terminals}
        bodies = [_repeated_body(patterns[n].to_regexp(), patterns[n].flags) for n in ignored]
        lines.append(f"{_IGNORED_RULE} ::= ( " + " | ".join(bodies) + " )*")
    return "\n".join(lines) + "\n"


def _rule(name: str) -> str:
    return "r-" + _safe(name)


def _term(name: str) -> str:
    return "t-" + _safe(name)


def _safe(name: str) -> str:
    """An EBNF rule name for a lark symbol; template instances (`_list{ITEM}`) get a checksum so
    that two names differing only in punctuation stay apart."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return clean if clean == name else f"{clean}-{zlib.crc32(name.encode()):08x}"


def _located(message: str, text: str) -> str:
    """lark's message, with a line and column added where lark names a symbol but no position."""
    if "at line" in message:
        return f"Lark grammar error: {message.strip()}"
    found = re.search(r"'([A-Za-z_][A-Za-z0-9_]*)'", message)
    where = ""
    if found:
        hit = re.search(rf"(?<![A-Za-z0-9_]){re.escape(found.group(1))}(?![A-Za-z0-9_])", text)
        if hit:
            line = text.count("\n", 0, hit.start()) + 1
            column = hit.start() - (text.rfind("\n", 0, hit.start()) + 1) + 1
            where = f" at line {line}, column {column}"
    return f"Lark grammar error{where}: {message.strip()}"


# ---------------------------------------------------------------- regex -> EBNF
def regex_to_ebnf(pattern: str, flags: Iterable[str] = ()) -> str:
    """An EBNF expression matching exactly the strings `pattern` fully matches."""
    items, flag_bits = _parse(pattern, flags)
    return _seq(items, bool(flag_bits & re.IGNORECASE), bool(flag_bits & re.DOTALL))


def _repeated_body(pattern: str, flags: Iterable[str]) -> str:
    """What one step of `(ignored)*` may match. For the usual `X+` ignore terminal (WS) that is X:
    a run of ignored `X+` would be ambiguous (two spaces = one WS or two), an LALR conflict."""
    items, flag_bits = _parse(pattern, flags)
    icase, dotall = bool(flag_bits & re.IGNORECASE), bool(flag_bits & re.DOTALL)
    if len(items) == 1 and str(items[0][0]) == "MAX_REPEAT" and items[0][1][:2] == (1, MAXREPEAT):
        return _seq(list(items[0][1][2]), icase, dotall)
    return _seq(items, icase, dotall)


def _parse(pattern: str, flags: Iterable[str]) -> Tuple[List[Tuple], int]:
    flag_bits = 0
    for flag in flags:
        flag_bits |= {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE, "x": re.VERBOSE,
                      "u": 0, "l": 0}.get(flag, 0)
    try:
        parsed = _sre.parse(pattern, flag_bits)
    except re.error as exc:
        raise LarkSyntaxError(f"bad regex /{pattern}/: {exc}") from None
    return list(parsed), flag_bits


def _seq(items: List[Tuple], icase: bool, dotall: bool) -> str:
    parts = [_item(op, arg, icase, dotall) for op, arg in items]
    return "( " + " ".join(parts) + " )" if parts else '""'


def _item(op, arg, icase: bool, dotall: bool) -> str:
    name = str(op)
    if name == "LITERAL":
        return _cls(_fold([(arg, arg)], icase))
    if name == "NOT_LITERAL":
        return _cls(_complement(_fold([(arg, arg)], icase)))
    if name == "ANY":
        return _cls([(0, _MAX_CP)] if dotall else _complement([(10, 10)]))
    if name == "IN":
        return _cls(_set(arg, icase))
    if name == "BRANCH":
        return "( " + " | ".join(_seq(list(b), icase, dotall) for b in arg[1]) + " )"
    if name == "SUBPATTERN":
        add, remove = arg[1], arg[2]
        icase = bool((icase or add & re.IGNORECASE) and not remove & re.IGNORECASE)
        dotall = bool((dotall or add & re.DOTALL) and not remove & re.DOTALL)
        return _seq(list(arg[3]), icase, dotall)
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, body = arg
        inner = _seq(list(body), icase, dotall)
        if high == MAXREPEAT:
            return f"{inner}{{{low},}}" if low > 1 else inner + ("+" if low == 1 else "*")
        return f"{inner}{{{low},{high}}}"
    raise LarkSyntaxError(f"regex construct {name} (anchors, lookarounds, backreferences) cannot be "
                          f"expressed in a character-level grammar; rewrite the terminal without it")


def _set(items, icase: bool) -> List[Tuple[int, int]]:
    ranges: List[Tuple[int, int]] = []
    negate = False
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            ranges.append((arg, arg))
        elif name == "RANGE":
            ranges.append(arg)
        elif name == "CATEGORY":
            ranges.extend(_category(str(arg)))
        else:
            raise LarkSyntaxError(f"unsupported regex class item {name}")
    ranges = _fold(ranges, icase)
    return _complement(ranges) if negate else ranges


def _category(name: str) -> List[Tuple[int, int]]:
    positive = name.replace("CATEGORY_NOT_", "CATEGORY_")
    if positive not in _CATEGORIES:
        raise LarkSyntaxError(f"unsupported regex class {name}")
    ranges = list(_CATEGORIES[positive])
    return _complement(ranges) if "_NOT_" in name else ranges


def _fold(ranges: List[Tuple[int, int]], icase: bool) -> List[Tuple[int, int]]:
    if not icase:
        return ranges
    out = list(ranges)
    for lo, hi in ranges:
        for cp in range(lo, min(hi, lo + 512) + 1):  # case pairs of a huge range are not worth listing
            for other in {chr(cp).lower(), chr(cp).upper()}:
                if len(other) == 1:
                    out.append((ord(other), ord(other)))
    return out


def _normalize(ranges: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: List[Tuple[int, int]]) -> List[Tuple[int, int]]:
    out, nxt = [], 0
    for lo, hi in _normalize(ranges + [_SURROGATES]):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return out


def _cls(ranges: List[Tuple[int, int]]) -> str:
    ranges = _normalize(ranges)
    if not ranges:
        raise LarkSyntaxError("a regex class matches no character")
    return "[" + "".join(_esc(lo) if lo == hi else f"{_esc(lo)}-{_esc(hi)}" for lo, hi in ranges) + "]"


def _esc(cp: int) -> str:
    if chr(cp).isascii() and chr(cp).isalnum():
        return chr(cp)
    return f"\\u{cp:04X}" if cp <= 0xFFFF else f"\\U{cp:08X}"
