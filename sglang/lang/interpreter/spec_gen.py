"""API speculative execution: generate several gens (and the constant text between them) in one
call, then match the output back to the template.

A gen's value is the output up to its first stop string (or, without stops, up to the next
constant text); the constant after it must then follow verbatim. The first part that does not
match, and everything after it, runs the normal way (one call per gen), so the program's
variables are what separate calls would give whenever the model follows the template.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from sglang.lang.ir import SglConstantText, SglGen, SglSamplingParams, SglSpecGen

if TYPE_CHECKING:
    from sglang.lang.interpreter.stream_executor import StreamExecutor


def _stops(params: SglSamplingParams) -> list[str]:
    if params.stop is None:
        return []
    return [params.stop] if isinstance(params.stop, str) else [s for s in params.stop if s]


def _value_end(output: str, pos: int, stops: list[str], next_const: Optional[str]) -> int:
    """End of a gen's value in `output` from `pos`, or -1 when the output does not show it."""
    markers = stops or ([next_const] if next_const else [])
    ends = [i for i in (output.find(m, pos) for m in markers) if i >= 0]
    return min(ends) if ends else -1


def run_spec_gen(ex: "StreamExecutor", expr: SglSpecGen) -> None:
    first = next(p for p in expr.parts if isinstance(p, SglGen))
    params = ex._gen_params(first)
    params.max_new_tokens, params.stop = expr.num_tokens, None
    result = ex.backend.generate(ex._gen_prompt("gen"), params)
    output, pos, i = result.text, 0, 0
    matched: list[str] = []
    while i < len(expr.parts):
        part = expr.parts[i]
        if isinstance(part, SglConstantText):
            if not output.startswith(part.value, pos):
                break
            ex._append(part.value)
            pos += len(part.value)
        else:
            nxt = expr.parts[i + 1] if i + 1 < len(expr.parts) else None
            end = _value_end(output, pos, _stops(ex._gen_params(part)),
                             nxt.value if isinstance(nxt, SglConstantText) else None)
            if end < 0:
                break
            value = output[pos:end]
            ex._append(value, part.name)
            if part.name is not None:
                ex.set_var(part.name, value, {"speculative": True, **result.meta_info})
                matched.append(part.name)
            pos = end
        i += 1
    ex.store.meta_info.setdefault("spec_gen", []).append(
        {"matched": matched, "fallback_parts": len(expr.parts) - i})
    for part in expr.parts[i:]:  # what the output did not cover: the normal way
        ex._execute(part)
