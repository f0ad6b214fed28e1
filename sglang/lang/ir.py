"""The frontend's expression language: what `s += ...` accepts.

A program submits expressions to its state; the interpreter executes them in order on a backend
and the compiler (sglang.compiler) traces them into a graph. Expressions are plain immutable
descriptions: they hold no backend and no result.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from sglang.lang.choices import ChoicesSamplingMethod, token_length_normalized

# Regexes for `gen(dtype=...)`: the value must parse as that Python type.
REGEX_INT = r"-?(0|[1-9][0-9]{0,17})"
REGEX_FLOAT = r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,8})?"
REGEX_BOOL = r"(True|False)"
REGEX_STR = r'"[^"\\\n]{0,256}"'
_DTYPE_REGEX = {int: REGEX_INT, float: REGEX_FLOAT, bool: REGEX_BOOL, str: REGEX_STR,
                "int": REGEX_INT, "float": REGEX_FLOAT, "bool": REGEX_BOOL, "str": REGEX_STR}


@dataclass
class SglSamplingParams:
    """Sampling parameters of one `gen`, with upstream's frontend names (max_tokens → max_new_tokens).

    `None` means "not given": it is filled from the run's defaults, then from the runtime's own.
    """

    max_new_tokens: Optional[int] = None
    min_new_tokens: Optional[int] = None
    n: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    stop_regex: Optional[Union[str, list[str]]] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    frequency_penalty: Optional[float] = None
    presence_penalty: Optional[float] = None
    ignore_eos: Optional[bool] = None
    return_logprob: Optional[bool] = None
    logprob_start_len: Optional[int] = None
    top_logprobs_num: Optional[int] = None
    return_text_in_logprobs: Optional[bool] = None
    json_schema: Optional[str] = None
    regex: Optional[str] = None
    ebnf: Optional[str] = None  # a GBNF grammar (runtime backends; both grammar backends serve it)
    lark: Optional[str] = None  # a grammar in Lark syntax (runtime started with --grammar-backend lark)
    seed: Optional[int] = None

    SAMPLING_KEYS = ("max_new_tokens", "min_new_tokens", "n", "stop", "stop_token_ids", "stop_regex",
                     "temperature", "top_p", "top_k", "min_p", "frequency_penalty",
                     "presence_penalty", "ignore_eos", "json_schema", "regex", "ebnf", "lark", "seed")
    LOGPROB_KEYS = ("return_logprob", "logprob_start_len", "top_logprobs_num",
                    "return_text_in_logprobs")

    def merged(self, defaults: "SglSamplingParams") -> "SglSamplingParams":
        """These parameters with every unset field taken from `defaults`."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in values.items():
            if value is None:
                values[name] = getattr(defaults, name)
        return SglSamplingParams(**values)

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    def runtime_sampling_params(self) -> dict[str, Any]:
        """The `sampling_params` object of our runtime's /generate (and Engine.generate)."""
        return {k: getattr(self, k) for k in self.SAMPLING_KEYS if getattr(self, k) is not None}

    def runtime_logprob_args(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.LOGPROB_KEYS if getattr(self, k) is not None}

    def is_constrained(self) -> bool:
        return any(getattr(self, k) is not None for k in GRAMMAR_KEYS)


GRAMMAR_KEYS = ("regex", "json_schema", "ebnf", "lark")  # at most one per gen()


def sampling_params_from_kwargs(max_tokens: Optional[int] = None, min_tokens: Optional[int] = None,
                                dtype: Any = None, **kwargs: Any) -> SglSamplingParams:
    """Frontend names → SglSamplingParams; `dtype` becomes a regex unless one is given."""
    if dtype is not None and kwargs.get("regex") is None:
        if dtype not in _DTYPE_REGEX:
            raise ValueError(f"gen(dtype=...) must be one of int, float, bool, str; got {dtype!r}")
        kwargs["regex"] = _DTYPE_REGEX[dtype]
    schema = kwargs.get("json_schema")
    if schema is not None and not isinstance(schema, str):
        kwargs["json_schema"] = json.dumps(schema)  # a dict or pydantic-produced schema
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(SglSamplingParams)}
    if unknown:
        raise TypeError(f"unknown sampling argument(s): {', '.join(sorted(unknown))}")
    return SglSamplingParams(max_new_tokens=max_tokens, min_new_tokens=min_tokens, **kwargs)


class SglExpr:
    """Base of every expression. `a + b` builds a list, so `s += "x" + gen("y")` works."""

    def __add__(self, other: Any) -> "SglExprList":
        return SglExprList([self, to_expr(other)])

    def __radd__(self, other: Any) -> "SglExprList":
        return SglExprList([to_expr(other), self])


@dataclass(eq=False)
class SglConstantText(SglExpr):
    value: str


@dataclass(eq=False)
class SglExprList(SglExpr):
    exprs: list[SglExpr]

    def __post_init__(self) -> None:  # flatten nested lists so passes see one sequence
        flat: list[SglExpr] = []
        for e in self.exprs:
            flat.extend(e.exprs if isinstance(e, SglExprList) else [e])
        self.exprs = flat


@dataclass(eq=False)
class SglGen(SglExpr):
    name: Optional[str]
    sampling_params: SglSamplingParams


@dataclass(eq=False)
class SglSelect(SglExpr):
    name: Optional[str]
    choices: list[str]
    temperature: float = 0.0
    choices_method: ChoicesSamplingMethod = token_length_normalized


@dataclass(eq=False)
class SglRoleBegin(SglExpr):
    role: str


@dataclass(eq=False)
class SglRoleEnd(SglExpr):
    role: str


@dataclass(eq=False)
class SglImage(SglExpr):
    """An image from a file path, URL, data URL or raw bytes."""
    source: Union[str, bytes]


@dataclass(eq=False)
class SglVideo(SglExpr):
    path: str
    num_frames: int


@dataclass(eq=False)
class SglVarScopeBegin(SglExpr):
    name: str


@dataclass(eq=False)
class SglVarScopeEnd(SglExpr):
    name: str


@dataclass(eq=False)
class SglCommitLazy(SglExpr):
    """Send the text so far (plus `extra_text`) to the backend as a prefill-only request, so later
    requests sharing it hit the cache."""
    extra_text: str = ""


@dataclass(eq=False)
class SglOrderIndependent(SglExpr):
    """Parts whose order does not matter to the program; the interpreter adds them as given, the
    compiler's code-motion pass may put constant parts first to lengthen shared prefixes."""
    parts: list[SglExpr]


@dataclass(eq=False)
class SglSpecGen(SglExpr):
    """Consecutive gens separated by constant text, generated in one call and matched back to the
    template (API speculative execution); executed part by part when that fails."""
    parts: list[SglExpr]
    num_tokens: int


@dataclass(eq=False)
class SglConcateAndAppend(SglExpr):
    """Append the children's texts to the parent (reusing their KV where the backend can)."""
    states: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class SglArgument(SglExpr):
    """A function argument seen by the tracer (sglang.compiler)."""
    name: str
    value: Any = None


@dataclass(eq=False)
class SglVariable(SglExpr):
    """A reference to a variable produced elsewhere (another state's gen); resolved when executed."""
    name: str
    source: Any = None  # the ProgramState/executor that produces it

    def __str__(self) -> str:  # used outside tracing: block and read the value
        return str(self.source.get_var(self.name))


def to_expr(value: Any) -> SglExpr:
    if isinstance(value, SglExpr):
        return value
    if isinstance(value, str):
        return SglConstantText(value)
    if isinstance(value, (int, float, bool)):
        return SglConstantText(str(value))
    if isinstance(value, (list, tuple)):
        return SglExprList([to_expr(v) for v in value])
    raise TypeError(f"cannot add a {type(value).__name__} to a program state; "
                    f"use str, an sgl primitive (gen, select, image, ...) or a list of those")


def check_choices(choices: Sequence[str]) -> list[str]:
    if isinstance(choices, str) or not isinstance(choices, Sequence) or not choices:
        raise ValueError("select(choices=...) needs a non-empty list of strings")
    if not all(isinstance(c, str) for c in choices):
        raise ValueError("select(choices=...) must all be strings")
    return list(choices)


ForkItem = Union[str, SglExpr, Callable[[int], Any], Sequence[Any]]
