"""GBNF (parsed by ebnf_parse) -> lark grammar text, in two forms.

* `to_lark_charwise`: one terminal per character cell, for our LALR driver (lark_grammar). The
  alphabet is split into cells, the classes of characters that every literal character and class
  of the grammar either wholly contains or wholly excludes; then each character belongs to exactly
  one terminal and lexing is a table lookup, with no lexer ambiguity for LALR to trip on. Terminals
  are `%declare`d: lark only builds the parse table, we feed it characters.
* `to_lark_natural`: literals and classes as ordinary lark terminals, for lark's own Earley
  parser: an independent check of outputs (tests) that shares none of the LALR machinery.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from typing import Dict, List, Tuple

from sglang.runtime.constrained.ebnf_parse import (
    MAX_CODEPOINT, Alt, CharClass, Intervals, Lit, Node, Ref, Repeat, Seq, parse_ebnf,
)


@dataclass(frozen=True)
class CharCells:
    """Partition of the used alphabet: codepoint -> cell id (-1 when no rule uses it)."""

    bounds: Tuple[int, ...]  # start of each elementary interval, ascending
    cell_of_interval: Tuple[int, ...]
    cell_ranges: Tuple[Intervals, ...]  # the codepoints of each cell

    def cell(self, codepoint: int) -> int:
        i = bisect.bisect_right(self.bounds, codepoint) - 1
        return self.cell_of_interval[i] if i >= 0 else -1

    @property
    def num_cells(self) -> int:
        return len(self.cell_ranges)


def _atoms(node: Node, out: Dict[Intervals, int]) -> None:
    if isinstance(node, Lit):
        for ch in node.text:
            out.setdefault(((ord(ch), ord(ch)),), len(out))
    elif isinstance(node, CharClass):
        out.setdefault(node.ranges, len(out))
    for child in getattr(node, "items", ()) + getattr(node, "options", ()):
        _atoms(child, out)
    if isinstance(node, Repeat):
        _atoms(node.item, out)


def char_cells(rules: Dict[str, Node]) -> Tuple[CharCells, Dict[Intervals, Tuple[int, ...]]]:
    """The partition and, for every atom (a class or a one-character range), its cells."""
    atoms: Dict[Intervals, int] = {}
    for node in rules.values():
        _atoms(node, atoms)
    cuts = {0, MAX_CODEPOINT + 1}
    for ranges in atoms:
        for lo, hi in ranges:
            cuts.update((lo, hi + 1))
    bounds = sorted(cuts)[:-1]
    signatures: Dict[frozenset, int] = {}
    cell_of_interval: List[int] = []
    members: List[List[Tuple[int, int]]] = []
    for i, start in enumerate(bounds):
        end = (bounds[i + 1] if i + 1 < len(bounds) else MAX_CODEPOINT + 1) - 1
        sig = frozenset(a for ranges, a in atoms.items() if any(lo <= start <= hi for lo, hi in ranges))
        if not sig:
            cell_of_interval.append(-1)
            continue
        cell = signatures.setdefault(sig, len(signatures))
        if cell == len(members):
            members.append([])
        members[cell].append((start, end))
        cell_of_interval.append(cell)
    cells = CharCells(tuple(bounds), tuple(cell_of_interval), tuple(tuple(m) for m in members))
    atom_cells = {ranges: tuple(c for sig, c in signatures.items() if a in sig) for ranges, a in atoms.items()}
    return cells, atom_cells


def _rule_names(rules: Dict[str, Node], root: str) -> Dict[str, str]:
    """lark names: the grammar's own where lark accepts them (so conflict reports read well)."""
    plain = {n for n in rules if re.fullmatch(r"[a-z][a-z0-9_]*", n) and n not in ("start", root)}
    names = {}
    for i, name in enumerate(rules):
        if name == root:
            names[name] = "start"
        elif name in plain:
            names[name] = name
        else:
            names[name] = f"r{i}_" + re.sub(r"[^a-z0-9_]", "_", name.lower())
            while names[name] in plain:
                names[name] += "_"
    return names


MAX_GRAMMAR_POSITIONS = 20_000  # LALR construction in pure Python: keep compiles under seconds


def terminal(cell: int) -> str:
    return f"C{cell}"


class _Emitter:
    def __init__(self, names: Dict[str, str], atom_cells=None):
        self.names, self.atom_cells = names, atom_cells
        self.helpers: Dict[str, str] = {}  # helper rule body -> name

    def emit(self, node: Node) -> str:
        if isinstance(node, Lit):
            if self.atom_cells is None:
                return json.dumps(node.text) if node.text else ""
            return " ".join(terminal(self.atom_cells[((ord(c), ord(c)),)][0]) for c in node.text)
        if isinstance(node, CharClass):
            if self.atom_cells is None:
                return "/[" + "".join(_class_part(lo, hi) for lo, hi in node.ranges) + "]/"
            cells = self.atom_cells[node.ranges]
            if len(cells) == 1:
                return terminal(cells[0])
            body = " | ".join(terminal(c) for c in cells)
            return self.helpers.setdefault(body, f"_cls{len(self.helpers)}")
        if isinstance(node, Ref):
            return self.names[node.name]
        if isinstance(node, Seq):
            return " ".join(filter(None, (self.emit(i) for i in node.items)))
        if isinstance(node, Alt):
            return "(" + " | ".join(self.emit(o) for o in node.options) + ")"
        inner = self.emit(node.item)
        if not inner:
            return ""
        if (node.low, node.high) in ((0, None), (1, None), (0, 1)):
            return f"({inner})" + {None: "*" if node.low == 0 else "+", 1: "?"}[node.high]
        fixed = " ".join([f"({inner})"] * node.low)
        if node.high is None:
            return f"{fixed} ({inner})*"
        # Up to `high - low` more, as a chain of helper rules `_optK: inner _optK-1 |`: linear in
        # the count (lark's own `~ m..n` expands into quadratically many alternatives).
        tail = ""
        for _ in range(node.high - node.low):
            body = f"({inner}) {tail} |" if tail else f"({inner}) |"
            tail = self.helpers.setdefault(body, f"_opt{len(self.helpers)}")
        return f"{fixed} {tail}".strip()

    def grammar(self, rules: Dict[str, Node]) -> List[str]:
        size = sum(_size(body) for body in rules.values())
        if size > MAX_GRAMMAR_POSITIONS:
            raise ValueError(f"EBNF grammar expands to {size} positions once repetition counts are "
                             f"applied, over the lark backend's limit of {MAX_GRAMMAR_POSITIONS}; "
                             f"lower the {{m,n}} counts or use --grammar-backend xgrammar")
        lines = [f"{self.names[name]}: {self.emit(body)}" for name, body in rules.items()]
        lines += [f"{name}: {body}" for body, name in self.helpers.items()]
        return lines


def _size(node: Node) -> int:
    """Grammar positions after expanding bounded repetition (what lark's table is built from)."""
    if isinstance(node, Lit):
        return max(len(node.text), 1)
    if isinstance(node, (CharClass, Ref)):
        return 1
    if isinstance(node, Repeat):
        return _size(node.item) * max(node.low, node.high or 0, 1)
    return sum(_size(child) for child in getattr(node, "items", ()) + getattr(node, "options", ()))


def _class_part(lo: int, hi: int) -> str:
    def esc(cp: int) -> str:
        # lark turns \U escapes into the character itself, so class-special characters keep a
        # backslash that re (not lark) interprets
        ch = chr(cp)
        if ch in "]\\^-[/":
            return "\\" + ch
        return ch if 0x20 < cp < 0x7F else f"\\U{cp:08x}"

    return esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}"


def to_lark_charwise(ebnf: str, root: str = "root") -> Tuple[str, CharCells]:
    rules = parse_ebnf(ebnf, root)
    cells, atom_cells = char_cells(rules)
    emitter = _Emitter(_rule_names(rules, root), atom_cells)
    lines = emitter.grammar(rules)
    if cells.num_cells:
        lines.append("%declare " + " ".join(terminal(c) for c in range(cells.num_cells)))
    return "\n".join(lines) + "\n", cells


def to_lark_natural(ebnf: str, root: str = "root") -> str:
    rules = parse_ebnf(ebnf, root)
    return "\n".join(_Emitter(_rule_names(rules, root)).grammar(rules)) + "\n"
