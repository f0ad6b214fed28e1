"""A parser for the GBNF dialect of EBNF (what xgrammar accepts) into a small AST.

Supported: `name ::= expr` rules (a rule runs until the next `name ::=`), `#` comments, quoted
literals with C-style escapes (\\n \\t \\r \\\\ \\" \\xHH \\uHHHH \\UHHHHHHHH), character classes
`[a-z]`/`[^"\\\\]`, grouping, alternation, `*` `+` `?` and `{m}` `{m,}` `{m,n}`. Errors name the
line and column so a client can fix its grammar (they become HTTP 400 bodies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

MAX_CODEPOINT = 0x10FFFF
Intervals = Tuple[Tuple[int, int], ...]  # sorted, disjoint, inclusive codepoint ranges


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class CharClass:
    ranges: Intervals


@dataclass(frozen=True)
class Ref:
    name: str
    line: int
    column: int


@dataclass(frozen=True)
class Seq:
    items: Tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    options: Tuple["Node", ...]


@dataclass(frozen=True)
class Repeat:
    item: "Node"
    low: int
    high: Optional[int]  # None: unbounded


Node = Union[Lit, CharClass, Ref, Seq, Alt, Repeat]


class EBNFSyntaxError(ValueError):
    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"EBNF grammar error at line {line}, column {column}: {message}")
        self.line, self.column = line, column


_TOKEN = re.compile(
    r"(?P<ws>\s+|#[^\n]*)|(?P<define>::=)|(?P<name>[A-Za-z_][A-Za-z0-9_\-.]*)"
    r'|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<cls>\[(?:[^\]\\\n]|\\.)*\])'
    r"|(?P<repeat>\{\s*\d+\s*(?:,\s*\d*\s*)?\})|(?P<op>[()|*+?])"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "[": "[", "]": "]", "-": "-",
            "^": "^", "0": "\0", "/": "/", "f": "\f", "v": "\v", "b": "\b"}
_HEX_LEN = {"x": 2, "u": 4, "U": 8}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    line: int
    column: int


def _tokenize(text: str) -> List[_Tok]:
    toks: List[_Tok] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise EBNFSyntaxError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1)
        if m.lastgroup != "ws":
            toks.append(_Tok(m.lastgroup, m.group(), line, pos - line_start + 1))
        for i, ch in enumerate(m.group()):
            if ch == "\n":
                line, line_start = line + 1, pos + i + 1
        pos = m.end()
    return toks


def _unescape(body: str, tok: _Tok) -> List[str]:
    """The characters of a literal or class body, one per element; an escaped character comes
    back prefixed with a backslash so that a class can tell `\\-` from a range dash."""
    out: List[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code = body[i + 1]
        if code in _HEX_LEN:
            digits = body[i + 2: i + 2 + _HEX_LEN[code]]
            if len(digits) != _HEX_LEN[code] or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise EBNFSyntaxError(f"bad \\{code} escape", tok.line, tok.column + i + 1)
            value = int(digits, 16)
            if value > MAX_CODEPOINT:
                raise EBNFSyntaxError(f"escape \\{code}{digits} is beyond U+10FFFF", tok.line, tok.column + i + 1)
            out.append("\\" + chr(value))
            i += 2 + len(digits)
        elif code in _ESCAPES:
            out.append("\\" + _ESCAPES[code])
            i += 2
        else:
            raise EBNFSyntaxError(f"unknown escape \\{code}", tok.line, tok.column + i + 1)
    return out


def _char(item: str) -> str:
    return item[-1]


def _parse_class(tok: _Tok) -> CharClass:
    body = tok.text[1:-1]
    negate = body.startswith("^")
    items = _unescape(body[1:] if negate else body, tok)
    ranges: List[Tuple[int, int]] = []
    i = 0
    while i < len(items):
        lo = ord(_char(items[i]))
        if i + 2 < len(items) and items[i + 1] == "-":
            hi = ord(_char(items[i + 2]))
            if hi < lo:
                raise EBNFSyntaxError(f"empty range {items[i]}-{items[i + 2]} in character class", tok.line, tok.column)
            ranges.append((lo, hi))
            i += 3
        else:
            ranges.append((lo, lo))
            i += 1
    merged = normalize(ranges)
    if negate:
        merged = complement(merged)
    if not merged:
        raise EBNFSyntaxError("character class matches no character", tok.line, tok.column)
    return CharClass(merged)


def normalize(ranges: List[Tuple[int, int]]) -> Intervals:
    out: List[List[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def complement(ranges: Intervals) -> Intervals:
    out, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= MAX_CODEPOINT:
        out.append((start, MAX_CODEPOINT))
    return tuple(out)


class _Parser:
    def __init__(self, toks: List[_Tok], end: Tuple[int, int]):
        self.toks, self.pos, self.end = toks, 0, end

    def peek(self, offset: int = 0) -> Optional[_Tok]:
        i = self.pos + offset
        return self.toks[i] if i < len(self.toks) else None

    def fail(self, message: str) -> EBNFSyntaxError:
        tok = self.peek()
        line, column = (tok.line, tok.column) if tok else self.end
        found = repr(tok.text) if tok else "end of grammar"
        return EBNFSyntaxError(f"{message}, found {found}", line, column)

    def rules(self) -> Dict[str, Node]:
        rules: Dict[str, Node] = {}
        while self.peek() is not None:
            tok = self.peek()
            if tok.kind != "name" or (self.peek(1) is None or self.peek(1).kind != "define"):
                raise self.fail("expected a rule `name ::= ...`")
            if tok.text in rules:
                raise EBNFSyntaxError(f"rule {tok.text!r} is defined twice", tok.line, tok.column)
            self.pos += 2
            rules[tok.text] = self.alternation()
        return rules

    def at_rule_start(self) -> bool:
        nxt = self.peek(1)
        return self.peek().kind == "name" and nxt is not None and nxt.kind == "define"

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.peek() is not None and self.peek().text == "|":
            self.pos += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def sequence(self) -> Node:
        items: List[Node] = []
        while self.peek() is not None and self.peek().text not in ("|", ")") and not self.at_rule_start():
            items.append(self.postfix(self.atom()))
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def atom(self) -> Node:
        tok = self.peek()
        if tok.kind == "string":
            self.pos += 1
            return Lit("".join(_char(c) for c in _unescape(tok.text[1:-1], tok)))
        if tok.kind == "cls":
            self.pos += 1
            return _parse_class(tok)
        if tok.kind == "name":
            self.pos += 1
            return Ref(tok.text, tok.line, tok.column)
        if tok.text == "(":
            self.pos += 1
            inner = self.alternation()
            if self.peek() is None or self.peek().text != ")":
                raise self.fail(f"expected ')' closing the group opened at line {tok.line}, column {tok.column}")
            self.pos += 1
            return inner
        raise self.fail("expected a literal, character class, rule name or '('")

    def postfix(self, node: Node) -> Node:
        while self.peek() is not None and (self.peek().text in ("*", "+", "?") or self.peek().kind == "repeat"):
            tok = self.peek()
            self.pos += 1
            if tok.text in ("*", "+", "?"):
                node = Repeat(node, 1 if tok.text == "+" else 0, 1 if tok.text == "?" else None)
                continue
            parts = [p.strip() for p in tok.text[1:-1].split(",")]
            low = int(parts[0])
            high = low if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
            if high is not None and high < low:
                raise EBNFSyntaxError(f"repetition {tok.text} has max < min", tok.line, tok.column)
            node = Repeat(node, low, high)
        return node


def parse_ebnf(text: str, root: str = "root") -> Dict[str, Node]:
    """Rules by name; raises EBNFSyntaxError (a ValueError) naming line and column."""
    lines = text.split("\n")
    parser = _Parser(_tokenize(text), (len(lines), len(lines[-1]) + 1))
    rules = parser.rules()
    if root not in rules:
        raise EBNFSyntaxError(f"the grammar has no {root!r} rule (the start symbol)", 1, 1)
    for node in rules.values():
        _check_refs(node, rules)
    _check_productive(rules)
    return rules


def _check_productive(rules: Dict[str, Node]) -> None:
    """Every rule must derive some finite string; otherwise a parser could walk into it and never
    be able to finish (e.g. `a ::= "x" a` has no base case)."""
    productive: set = set()
    changed = True
    while changed:
        changed = False
        for name, body in rules.items():
            if name not in productive and _derives(body, productive):
                productive.add(name)
                changed = True
    stuck = [name for name in rules if name not in productive]
    if stuck:
        raise ValueError(f"EBNF rule(s) {', '.join(map(repr, stuck))} can never finish (every alternative "
                         f"recurses without a base case), so the grammar would generate forever; add a "
                         f"non-recursive alternative")


def _derives(node: Node, productive: set) -> bool:
    if isinstance(node, (Lit, CharClass)):
        return True
    if isinstance(node, Ref):
        return node.name in productive
    if isinstance(node, Seq):
        return all(_derives(i, productive) for i in node.items)
    if isinstance(node, Alt):
        return any(_derives(o, productive) for o in node.options)
    return node.low == 0 or _derives(node.item, productive)


def _check_refs(node: Node, rules: Dict[str, Node]) -> None:
    if isinstance(node, Ref) and node.name not in rules:
        raise EBNFSyntaxError(f"rule {node.name!r} is used but never defined", node.line, node.column)
    for child in _children(node):
        _check_refs(child, rules)


def _children(node: Node) -> Tuple[Node, ...]:
    if isinstance(node, Seq):
        return node.items
    if isinstance(node, Alt):
        return node.options
    if isinstance(node, Repeat):
        return (node.item,)
    return ()
