"""Per-request sampling parameters: names and defaults follow upstream SGLang's `sampling_params`.

Life of a SamplingParams:
- `from_dict` (HTTP / Engine input): unknown keys and wrong types are rejected at once;
- `verify(vocab_size)`: every range check, with a message naming the parameter and what is allowed;
- `normalize(tokenizer)`: canonical forms the runtime relies on (stop as a list, stop-string
  windows, greedy expressed as top_k = 1).
All errors are `ValueError`, so the server can answer them uniformly with HTTP 400.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from sglang.runtime.sampling.stop_regex import check_stop_regex

# Below this temperature sampling is indistinguishable from argmax, and dividing by it would
# overflow; such requests are turned into top_k = 1 (see `normalize`).
GREEDY_TEMPERATURE_EPS = 1e-6
# Bounds on stop strings (and stop_regex patterns), checked before anything else looks at them:
# each one is encoded once per request and searched for after every generated token, so their
# number and length bound per-token work. Far above real use (OpenAI allows 4 stop sequences).
MAX_STOP_STRINGS = 256
MAX_STOP_STR_LEN = 1024  # characters
# OpenAI's range for logit_bias values. +-100 already bans or forces a token; larger values only
# risk overflow (1e308 turns the logits into inf/nan and sampling returns token 0).
MAX_LOGIT_BIAS = 100.0

_FLOAT_FIELDS = ("temperature", "top_p", "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty")
_INT_FIELDS = ("max_new_tokens", "min_new_tokens", "top_k", "n")
_BOOL_FIELDS = ("ignore_eos", "skip_special_tokens", "spaces_between_special_tokens", "no_stop_trim")
_OPTIONAL_STR_FIELDS = ("regex", "json_schema", "ebnf", "lark")
_GRAMMAR_FIELDS = ("regex", "json_schema", "ebnf", "lark")


@dataclass
class SamplingParams:
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1: the whole vocabulary
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop: Optional[Union[str, List[str]]] = None
    stop_token_ids: Optional[List[int]] = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    no_stop_trim: bool = False
    logit_bias: Optional[Dict[str, float]] = None  # token id (as str or int) -> added logit
    n: int = 1
    seed: Optional[int] = None
    regex: Optional[str] = None
    json_schema: Optional[str] = None
    ebnf: Optional[str] = None
    lark: Optional[str] = None  # a grammar in Lark's own syntax (served by --grammar-backend lark)
    stop_regex: Optional[Union[str, List[str]]] = None
    custom_params: Optional[Dict[str, Any]] = None

    # Derived by `normalize`; not parameters (never accepted from, or echoed to, users).
    stop_str_max_len: int = field(default=0, init=False, repr=False)  # longest stop string, characters
    stop_str_max_tokens: int = field(default=0, init=False, repr=False)  # longest stop string, tokens

    # ---------------------------------------------------------------- construction
    @classmethod
    def param_names(cls) -> List[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "SamplingParams":
        """Build from user input. A value of None means "not given" and keeps the default, since
        JSON clients commonly send null for unset fields."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ValueError(f"sampling_params must be an object (dict), got {type(d).__name__}")
        names = set(cls.param_names())
        for key in d:
            if key not in names:
                raise ValueError(f"unknown sampling parameter {key!r}; allowed: {', '.join(sorted(names))}")
        params = cls(**{k: v for k, v in d.items() if v is not None})
        params.check_types()
        params._coerce_numbers()
        return params

    def to_dict(self) -> Dict[str, Any]:
        """The parameters as given (after normalization), for echoing back to clients."""
        out = {}
        for name in self.param_names():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
        return out

    def copy_with(self, **changes: Any) -> "SamplingParams":
        """A copy with some fields replaced, keeping the derived (normalized) fields."""
        out = dataclasses.replace(self, **changes)
        out.stop_str_max_len, out.stop_str_max_tokens = self.stop_str_max_len, self.stop_str_max_tokens
        return out

    @property
    def is_greedy(self) -> bool:
        return self.top_k == 1 or (_is_number(self.temperature) and self.temperature < GREEDY_TEMPERATURE_EPS)

    # ---------------------------------------------------------------- type checks
    def check_types(self) -> None:
        for name in _FLOAT_FIELDS:
            _require_number(name, getattr(self, name))
        for name in _INT_FIELDS:
            _require_int(name, getattr(self, name))
        for name in _BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        if self.seed is not None:
            _require_int("seed", self.seed)
        for name in _OPTIONAL_STR_FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                hint = " (serialize the schema with json.dumps)" if name == "json_schema" else ""
                raise ValueError(f"{name} must be a string{hint}, got {type(value).__name__}")
        _require_stop_limits("stop", self.stop)
        _require_stop_limits("stop_regex", self.stop_regex)
        _require_str_or_str_list("stop", self.stop)
        _require_str_or_str_list("stop_regex", self.stop_regex)
        self._check_container_types()

    def _check_container_types(self) -> None:
        if self.stop_token_ids is not None:
            if not isinstance(self.stop_token_ids, (list, tuple, set)):
                raise ValueError(f"stop_token_ids must be a list of token ids, got {type(self.stop_token_ids).__name__}")
            for tid in self.stop_token_ids:
                _require_int("stop_token_ids entries", tid)
        if self.logit_bias is not None:
            if not isinstance(self.logit_bias, dict):
                raise ValueError(f"logit_bias must be an object mapping token id -> bias, got {type(self.logit_bias).__name__}")
            for key, value in self.logit_bias.items():
                _require_number(f"logit_bias[{key!r}]", value)
        if self.custom_params is not None and not isinstance(self.custom_params, dict):
            raise ValueError(f"custom_params must be an object (dict), got {type(self.custom_params).__name__}")

    def _coerce_numbers(self) -> None:
        # Integers are accepted where floats are expected (temperature=1); store floats.
        for name in _FLOAT_FIELDS:
            setattr(self, name, float(getattr(self, name)))
        if self.stop_token_ids is not None:
            self.stop_token_ids = list(self.stop_token_ids)

    # ---------------------------------------------------------------- range checks
    def verify(self, vocab_size: int) -> None:
        """Raise ValueError naming the first invalid parameter and its allowed range."""
        self.check_types()
        self._verify_sampling_ranges()
        self._verify_lengths()
        self._verify_token_ids(vocab_size)
        grammars = [name for name in _GRAMMAR_FIELDS if getattr(self, name) is not None]
        if len(grammars) > 1:
            raise ValueError(f"only one of regex, json_schema, ebnf, lark may be set; got {', '.join(grammars)}")
        self._verify_stop_regex()

    def _verify_stop_regex(self) -> None:
        patterns = [self.stop_regex] if isinstance(self.stop_regex, str) else (self.stop_regex or [])
        for pattern in patterns:
            check_stop_regex(pattern)

    def _verify_sampling_ranges(self) -> None:
        _require_range("temperature", self.temperature, 0.0, math.inf, "[0, inf)")
        _require_range("top_p", self.top_p, 0.0, 1.0, "(0, 1]", low_open=True)
        if self.top_k < -1 or self.top_k == 0:
            raise ValueError(f"top_k must be -1 (the whole vocabulary) or >= 1, got {self.top_k}")
        _require_range("min_p", self.min_p, 0.0, 1.0, "[0, 1]")
        _require_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0, "[-2, 2]")
        _require_range("presence_penalty", self.presence_penalty, -2.0, 2.0, "[-2, 2]")
        _require_range("repetition_penalty", self.repetition_penalty, 0.0, 2.0, "(0, 2]", low_open=True)
        for key, value in (self.logit_bias or {}).items():
            _require_range(f"logit_bias[{key!r}]", value, -MAX_LOGIT_BIAS, MAX_LOGIT_BIAS, "[-100, 100]")

    def _verify_lengths(self) -> None:
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens must be in [0, max_new_tokens={self.max_new_tokens}], got {self.min_new_tokens}"
            )
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        stops = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if any(s == "" for s in stops):
            raise ValueError("stop strings must be non-empty; remove the empty string from stop")

    def _verify_token_ids(self, vocab_size: int) -> None:
        for tid in self.stop_token_ids or []:
            if not 0 <= tid < vocab_size:
                raise ValueError(f"stop_token_ids entries must be in [0, {vocab_size}), got {tid}")
        for key in self.logit_bias or {}:
            tid = parse_token_id(key)
            if tid is None or not 0 <= tid < vocab_size:
                raise ValueError(f"logit_bias keys must be token ids in [0, {vocab_size}), got {key!r}")

    # ---------------------------------------------------------------- canonical form
    def normalize(self, tokenizer: Any) -> None:
        """Canonicalize in place (idempotent). `tokenizer` may be None (skip_tokenizer_init)."""
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        else:
            self.stop = list(self.stop)
        self.stop_str_max_len = max((len(s) for s in self.stop), default=0)
        self.stop_str_max_tokens = max((_token_len(tokenizer, s) for s in self.stop), default=0)
        # Greedy is an argmax, not a separate code path: top_k = 1 keeps only the argmax, and
        # temperature 1.0 keeps the batched division by temperature well defined.
        if self.temperature < GREEDY_TEMPERATURE_EPS:
            self.temperature = 1.0
            self.top_k = 1


# -------------------------------------------------------------------- helpers


def parse_token_id(key: Any) -> Optional[int]:
    """logit_bias keys arrive as strings from JSON ("42") or ints from Python; None if neither."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.strip().lstrip("-").isdigit():
        return int(key)
    return None


def _token_len(tokenizer: Any, text: str) -> int:
    if tokenizer is None:
        # No tokenizer (skip_tokenizer_init): fall back to the character count.
        return len(text)
    return len(tokenizer.encode(text, add_special_tokens=False))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_number(name: str, value: Any) -> None:
    if not _is_number(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _require_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")


def _require_range(name: str, value: float, low: float, high: float, text: str, low_open: bool = False) -> None:
    below = value <= low if low_open else value < low
    if below or value > high:
        raise ValueError(f"{name} must be in {text}, got {value}")


def _require_stop_limits(name: str, value: Any) -> None:
    """At most MAX_STOP_STRINGS entries of at most MAX_STOP_STR_LEN characters (types are checked
    after: this runs first so that a huge list is refused before it is scanned)."""
    items = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    if len(items) > MAX_STOP_STRINGS:
        raise ValueError(f"{name} has {len(items)} entries; at most {MAX_STOP_STRINGS} are allowed")
    for item in items:
        if isinstance(item, str) and len(item) > MAX_STOP_STR_LEN:
            raise ValueError(f"{name} entries may have at most {MAX_STOP_STR_LEN} characters, got one of {len(item)}")


def _require_str_or_str_list(name: str, value: Any) -> None:
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise ValueError(f"{name} must be a string or a list of strings, got {value!r}")
