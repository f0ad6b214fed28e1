"""Checks on a grammar in xgrammar's EBNF, made before it is compiled.

xgrammar prints every grammar it builds (from a regex, a JSON schema or user EBNF) in one
normalized EBNF form; we parse that text and compute:
- `productive`: whether the root derives any string at all (an empty language, e.g. the regex
  `[^\\s\\S]` or `root ::= "a" root`, would leave the sampler a row with no allowed token, and
  xgrammar's jump-forward would loop on the second one);
- `forced`: an upper bound on the text the grammar can force from any point (sequences add up,
  alternatives take their largest, repetitions multiply by their minimum count), with calls into
  the rule's own recursion counted as 0;
- `recursive_forced`: the bound per level of recursion open on the parser's stack (0 when no
  rule is recursive): each open level may add that much forced closing text.

Anything this parser does not know raises `EBNFMeasureError`; the caller then treats the forced
length as unknown (and never jumps forward on that grammar).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from sglang.runtime.constrained.regex_measure import measure_regex

_TOKEN = re.compile(
    r'\s*(?:(?P<def>::=)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<cls>\[(?:[^\]\\]|\\.)*\])'
    r'|(?P<rep>\{\s*-?\d+\s*(?:,\s*-?\d+\s*)?\})|(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)'
    r'|(?P<punct>[()|*+?,=]))', re.S)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "f": "\f", "v": "\v", "b": "\b", "0": "\0", "a": "\a", "e": "\x1b"}
_MAX_CODE_POINT = 0x10FFFF

Node = Tuple  # ("str", n) | ("class", empty) | ("ref", name) | ("seq"|"alt", [nodes]) | ("rep", lo, node) | ("regex", forced, count)


class EBNFMeasureError(ValueError):
    """The printed grammar uses a construct this module does not model."""


@dataclass(frozen=True)
class GrammarMeasure:
    productive: bool
    forced: int
    recursive_forced: int
    largest_count: int


def measure_ebnf(text: str, root: str = "root") -> GrammarMeasure:
    rules = _Parser(text).rules()
    if root not in rules:
        raise EBNFMeasureError(f"no rule named {root!r}")
    rules = {name: rules[name] for name in _reachable(rules, root)}  # e.g. unused basic_* rules
    productive = _productive(rules)
    forced, recursive, largest = _forced(rules, root)
    return GrammarMeasure(root in productive, forced, recursive, largest)


# ---------------------------------------------------------------------------- parsing
class _Parser:
    def __init__(self, text: str):
        self.tokens: List[Tuple[str, str]] = []
        pos, text = 0, text.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise EBNFMeasureError(f"unexpected text at {pos}: {text[pos:pos + 20]!r}")
            self.tokens.append((match.lastgroup, match.group(match.lastgroup)))
            pos = match.end()
        self.i = 0

    def peek(self, ahead: int = 0) -> Tuple[str, str]:
        j = self.i + ahead
        return self.tokens[j] if j < len(self.tokens) else ("eof", "")

    def take(self, value: Optional[str] = None) -> Tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise EBNFMeasureError(f"expected {value!r}, got {token[1]!r}")
        self.i += 1
        return token

    def rules(self) -> Dict[str, Node]:
        rules: Dict[str, Node] = {}
        while self.peek()[0] != "eof":
            kind, name = self.take()
            if kind != "name":
                raise EBNFMeasureError(f"expected a rule name, got {name!r}")
            self.take("::=")
            rules[name] = self.alternatives()
            if self.peek()[1] == "(" and self.peek(1)[1] == "=":  # lookahead: constrains nothing we count
                self.take("(")
                self.take("=")
                self.alternatives()
                self.take(")")
        return rules

    def _at_sequence_end(self) -> bool:
        kind, value = self.peek()
        return (kind == "eof" or value in (")", "|") or self.peek(1)[0] == "def"
                or (value == "(" and self.peek(1)[1] == "="))

    def alternatives(self) -> Node:
        alts = [self.sequence()]
        while self.peek()[1] == "|":
            self.take()
            alts.append(self.sequence())
        return alts[0] if len(alts) == 1 else ("alt", alts)

    def sequence(self) -> Node:
        items = []
        while not self._at_sequence_end():
            items.append(self.quantified(self.atom()))
        return items[0] if len(items) == 1 else ("seq", items)

    def atom(self) -> Node:
        kind, value = self.take()
        if kind == "str":
            return ("str", len(_unescape(value[1:-1])))
        if kind == "cls":
            return ("class", _class_is_empty(value[1:-1]))
        if value == "(":
            inner = self.alternatives()
            self.take(")")
            return inner
        if kind == "name" and self.peek()[1] == "(":
            return self.call(value)
        if kind == "name":
            return ("ref", value)
        raise EBNFMeasureError(f"unexpected {value!r}")

    def call(self, name: str) -> Node:
        if name != "Regex":
            raise EBNFMeasureError(f"unsupported construct {name}(...)")
        self.take("(")
        kind, pattern = self.take()
        if kind != "str":
            raise EBNFMeasureError("Regex(...) without a pattern string")
        while self.peek()[1] != ")":  # options such as json_string=true
            if self.peek()[0] == "eof":
                raise EBNFMeasureError("unterminated Regex(...)")
            self.take()
        self.take(")")
        measure = measure_regex(_unescape(pattern[1:-1]))
        return ("regex", measure.forced, measure.largest_count)

    def quantified(self, node: Node) -> Node:
        kind, value = self.peek()
        if value in ("*", "+", "?"):
            self.take()
            return ("rep", 1 if value == "+" else 0, node)
        if kind == "rep":
            self.take()
            return ("rep", int(value[1:-1].split(",")[0]), node)
        return node


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 == len(body):
            out.append(ch)
            i += 1
            continue
        code = body[i + 1]
        width = {"x": 2, "u": 4, "U": 8}.get(code)
        if width is not None:
            out.append(chr(min(int(body[i + 2:i + 2 + width], 16), _MAX_CODE_POINT)))
            i += 2 + width
        else:
            out.append(_ESCAPES.get(code, code))
            i += 2
    return "".join(out)


def _class_is_empty(body: str) -> bool:
    negated = body.startswith("^")
    chars = _unescape_class(body[1:] if negated else body)
    ranges: List[Tuple[int, int]] = []
    i = 0
    while i < len(chars):
        lo, literal = chars[i]
        if i + 2 < len(chars) and chars[i + 1] == ("-", True):
            ranges.append((ord(lo), ord(chars[i + 2][0])))
            i += 3
        else:
            ranges.append((ord(lo), ord(lo)))
            i += 1
    if not negated:
        return not any(lo <= hi for lo, hi in ranges)
    covered = 0  # every code point below this one is listed
    for lo, hi in sorted(ranges):
        if lo > covered:
            return False
        covered = max(covered, hi + 1)
    return covered > _MAX_CODE_POINT


def _unescape_class(body: str) -> List[Tuple[str, bool]]:
    """Characters of a class body; the flag is True for an unescaped '-' (a range marker)."""
    out: List[Tuple[str, bool]] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            width = {"x": 2, "u": 4, "U": 8}.get(body[i + 1], 0)
            out.append((_unescape(body[i:i + 2 + width]), False))
            i += 2 + width
        else:
            out.append((body[i], body[i] == "-"))
            i += 1
    return out


# ---------------------------------------------------------------------------- analysis
def _refs(node: Node) -> Set[str]:
    if node[0] == "ref":
        return {node[1]}
    if node[0] in ("seq", "alt"):
        return set().union(*(_refs(n) for n in node[1]))
    if node[0] == "rep":
        return _refs(node[2])
    return set()


def _reachable(rules: Dict[str, Node], root: str) -> Set[str]:
    seen, frontier = {root}, [root]
    while frontier:
        for name in _refs(rules[frontier.pop()]) & rules.keys():
            if name not in seen:
                seen.add(name)
                frontier.append(name)
    return seen


def _productive(rules: Dict[str, Node]) -> Set[str]:
    done: Set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, body in rules.items():
            if name not in done and _derives(body, done):
                done.add(name)
                changed = True
    return done


def _derives(node: Node, productive: Set[str]) -> bool:
    kind = node[0]
    if kind == "class":
        return not node[1]
    if kind == "ref":
        return node[1] in productive
    if kind == "seq":
        return all(_derives(n, productive) for n in node[1])
    if kind == "alt":
        return any(_derives(n, productive) for n in node[1])
    if kind == "rep":
        return node[1] == 0 or _derives(node[2], productive)
    return True  # strings, regexes


def _forced(rules: Dict[str, Node], root: str) -> Tuple[int, int, int]:
    """(forced bound from the root, per-recursion-level bound, largest minimum count)."""
    graph = {name: _refs(body) & rules.keys() for name, body in rules.items()}
    bound: Dict[str, int] = {}
    recursive, largest = 0, 0
    for component in _components(graph):
        members = set(component)
        cyclic = len(component) > 1 or component[0] in graph[component[0]]
        for name in component:
            value, count = _node_forced(rules[name], bound, members)
            bound[name] = value
            largest = max(largest, count)
            if cyclic:
                recursive = max(recursive, value)
    return bound[root], recursive, largest


def _node_forced(node: Node, bound: Dict[str, int], cut: Set[str]) -> Tuple[int, int]:
    kind = node[0]
    if kind == "str":
        return node[1], 0
    if kind == "class":
        return 1, 0
    if kind == "regex":
        return node[1], node[2]
    if kind == "ref":
        return (0 if node[1] in cut else bound[node[1]]), 0
    if kind in ("seq", "alt"):
        parts = [_node_forced(n, bound, cut) for n in node[1]]
        values = [v for v, _ in parts]
        return (sum(values) if kind == "seq" else max(values)), max(c for _, c in parts)
    value, count = _node_forced(node[2], bound, cut)
    return max(node[1], 1) * value, max(count, node[1])


def _components(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components, callees before callers (iterative Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    for start in graph:
        if start in index:
            continue
        work: List[Tuple[str, Union[Sequence[str], None], int]] = [(start, None, 0)]
        while work:
            name, edges, pos = work.pop()
            if edges is None:
                index[name] = low[name] = len(index)
                stack.append(name)
                on_stack.add(name)
                edges = sorted(graph[name])
            if pos < len(edges):
                work.append((name, edges, pos + 1))
                nxt = edges[pos]
                if nxt not in index:
                    work.append((nxt, None, 0))
                elif nxt in on_stack:
                    low[name] = min(low[name], index[nxt])
                continue
            if low[name] == index[name]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == name:
                        break
                out.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[name])
    return out
