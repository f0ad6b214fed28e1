"""The compiler's IR: a traced program as an ordered list of operations on streams.

A stream is one program state (the root, or a fork child). Operations keep the program's global
order, which is all an executor needs; `nodes()` gives the graph view (one node per primitive,
with sequence edges inside a stream and data edges where a value crosses streams) used by
passes, `print_graph` and `to_dot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Union

from sglang.lang.ir import (SglArgument, SglCommitLazy, SglConstantText, SglExpr, SglExprList,
                            SglGen, SglImage, SglOrderIndependent, SglRoleBegin, SglRoleEnd,
                            SglSelect, SglSpecGen, SglVarScopeBegin,
                            SglVarScopeEnd, SglVariable, SglVideo)


@dataclass(eq=False)
class TracedVariable(SglVariable):
    """`s["x"]` during tracing: a reference, not a value. Anything that would need the value
    (str(), f-strings, comparisons, truth tests) cannot be traced."""

    stream: int = 0

    def _refuse(self, *_: Any, **__: Any) -> Any:
        from sglang.compiler.tracer import TraceError
        raise TraceError(f"the program uses the generated value {self.name!r} in Python (control "
                         f"flow, str() or an f-string); only `s += s[{self.name!r}]`-style use "
                         f"can be traced")

    __str__ = __format__ = __bool__ = __eq__ = __ne__ = __lt__ = __gt__ = _refuse
    __len__ = __iter__ = __contains__ = __int__ = __float__ = __getitem__ = _refuse
    __hash__ = object.__hash__

    def __getattr__(self, attr: str) -> Any:  # e.g. s["x"].startswith(...)
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._refuse()


@dataclass
class Submit:
    stream: int
    expr: SglExpr


@dataclass
class Fork:
    stream: int
    children: list[int]


@dataclass
class Join:
    stream: int
    children: list[int]
    mode: str


@dataclass
class SetVar:
    stream: int
    name: str
    value: Any


@dataclass
class CacheHint:
    """Prefill-only request for the stream's text plus `extra` (inserted by prefix sharing)."""
    stream: int
    extra: list[SglExpr] = field(default_factory=list)


Op = Union[Submit, Fork, Join, SetVar, CacheHint]


@dataclass
class Node:
    id: int
    stream: int
    kind: str
    label: str
    deps: list[int] = field(default_factory=list)   # data edges (other streams)


@dataclass
class ProgramGraph:
    ops: list[Op]
    arg_names: list[str]
    bound: dict[str, Any] = field(default_factory=dict)
    num_streams: int = 1

    def submits(self, stream: Optional[int] = None) -> Iterator[Submit]:
        for op in self.ops:
            if isinstance(op, Submit) and (stream is None or op.stream == stream):
                yield op

    def nodes(self) -> list[Node]:
        nodes: list[Node] = []
        producers: dict[tuple[int, str], int] = {}
        for op in self.ops:
            for node in _op_nodes(op, len(nodes), producers):
                nodes.append(node)
        return nodes


def _short(text: str, limit: int = 40) -> str:
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return repr(text)


def expr_label(expr: SglExpr) -> tuple[str, str]:
    """(kind, one-line description) of a leaf expression."""
    if isinstance(expr, SglConstantText):
        return "text", _short(expr.value)
    if isinstance(expr, SglArgument):
        return "argument", expr.name
    if isinstance(expr, SglGen):
        given = ", ".join(f"{k}={v!r}" for k, v in expr.sampling_params.given().items())
        return "gen", f"{expr.name} ({given})" if given else str(expr.name)
    if isinstance(expr, SglSelect):
        return "select", f"{expr.name} choices={expr.choices!r}"
    if isinstance(expr, (SglRoleBegin, SglRoleEnd)):
        return ("role_begin" if isinstance(expr, SglRoleBegin) else "role_end"), expr.role
    if isinstance(expr, SglImage):
        return "image", _short(expr.source if isinstance(expr.source, str) else "<bytes>")
    if isinstance(expr, SglVideo):
        return "video", f"{expr.path} frames={expr.num_frames}"
    if isinstance(expr, TracedVariable):
        return "variable", f"{expr.name} from stream {expr.stream}"
    if isinstance(expr, (SglVarScopeBegin, SglVarScopeEnd)):
        return ("var_scope_begin" if isinstance(expr, SglVarScopeBegin) else "var_scope_end"), expr.name
    if isinstance(expr, SglCommitLazy):
        return "cache_hint", ""
    if isinstance(expr, SglSpecGen):
        names = [p.name for p in expr.parts if isinstance(p, SglGen)]
        return "spec_gen", f"{', '.join(map(str, names))} in one call of {expr.num_tokens} tokens"
    if isinstance(expr, SglOrderIndependent):
        return "order_independent", f"{len(expr.parts)} parts"
    return type(expr).__name__, getattr(expr, "name", "") or ""


def leaves(expr: SglExpr) -> list[SglExpr]:
    return list(expr.exprs) if isinstance(expr, SglExprList) else [expr]


def _op_nodes(op: Op, start: int, producers: dict[tuple[int, str], int]) -> list[Node]:
    out: list[Node] = []
    if isinstance(op, Submit):
        for leaf in leaves(op.expr):
            kind, label = expr_label(leaf)
            node = Node(start + len(out), op.stream, kind, label)
            if isinstance(leaf, TracedVariable) and (leaf.stream, leaf.name) in producers:
                node.deps.append(producers[(leaf.stream, leaf.name)])
            name = getattr(leaf, "name", None)
            if isinstance(leaf, (SglGen, SglSelect, SglVarScopeEnd)) and name:
                producers[(op.stream, name)] = node.id
            out.append(node)
    elif isinstance(op, Fork):
        fork = Node(start, op.stream, "fork", f"{len(op.children)} children")
        out.append(fork)
        for i, child in enumerate(op.children):
            out.append(Node(start + 1 + i, child, "get_fork_item", f"{i} of fork %{start}", [start]))
    elif isinstance(op, Join):
        deps = [producers[k] for k in producers if k[0] in op.children]
        out.append(Node(start, op.stream, "join", f"{op.mode} streams {op.children}", deps))
        for (stream, name) in list(producers):
            if stream in op.children:
                producers[(op.stream, name)] = start
    elif isinstance(op, SetVar):
        out.append(Node(start, op.stream, "set_var", op.name))
        producers[(op.stream, op.name)] = start
    elif isinstance(op, CacheHint):
        extra = "".join(e.value for e in op.extra if isinstance(e, SglConstantText))
        out.append(Node(start, op.stream, "cache_hint", f"+{_short(extra)}" if extra else ""))
    return out


def format_graph(graph: ProgramGraph) -> str:
    lines = []
    for node in graph.nodes():
        deps = f"  <- {', '.join(f'%{d}' for d in node.deps)}" if node.deps else ""
        lines.append(f"%{node.id:<3} s{node.stream:<2} {node.kind:<15} {node.label}{deps}")
    return "\n".join(lines)


def graph_to_dot(graph: ProgramGraph, name: str = "program") -> str:
    nodes = graph.nodes()
    out = [f'digraph "{name}" {{', "  rankdir=TB;", "  node [shape=box, fontname=monospace];"]
    for stream in sorted({n.stream for n in nodes}):
        out.append(f'  subgraph cluster_s{stream} {{ label="stream {stream}";')
        members = [n for n in nodes if n.stream == stream]
        for n in members:
            label = f"{n.kind} {n.label}".replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'    n{n.id} [label="{label}"];')
        out += [f"    n{a.id} -> n{b.id};" for a, b in zip(members, members[1:])]
        out.append("  }")
    for n in nodes:
        out += [f"  n{d} -> n{n.id} [style=dashed];" for d in n.deps]
    out.append("}")
    return "\n".join(out)
