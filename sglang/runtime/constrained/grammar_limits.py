"""Size and time limits on grammars, checked before compiling, and the errors that name them.

Two things can blow up on a hostile spec: building the automaton (our fsm backend expands every
repetition into states; `a{99999999}` would take hours and gigabytes) and jump-forward (a grammar
that forces millions of characters makes the forced string itself huge). Both are refused with a
ValueError (the request gets a 400) before any work is done: a compile thread that was merely
timed out would keep its CPU and memory.

Jump-forward is also bounded at run time, a chunk at a time (see `JUMP_CHUNK_CHARS`).
"""

from __future__ import annotations

from typing import Any, Iterator, Tuple

# Longest text a grammar may force without sampling (the minimum counts of nested repetitions,
# multiplied out: `(a{100}){1000}` forces 100000). xgrammar builds the whole forced string in one
# native call, about 0.2 us a character, so this keeps one call near 10 ms. Nothing useful needs
# more: forced text beyond a model's context could never be finished anyway.
MAX_FORCED_CHARS = 1 << 16

# xgrammar's jump-forward in a recursive grammar (JSON values nest) may also close every open
# level; each adds at most the grammar's per-level bound. Jumping stops once that could exceed this.
MAX_NATIVE_JUMP_CHARS = 1 << 20

# The fsm backend builds about one automaton state per character position of the fully expanded
# regex (`[a-z]{0,100}` is 100 positions; a JSON string character is 13). interegular's time grows
# faster than linearly: 1.5 s for `a{4000}`, 8 s for a 300-character JSON string (3900 positions),
# on the compile thread; larger regexes are refused (xgrammar keeps repetitions compact).
MAX_FSM_REGEX_POSITIONS = 4096

# A grammar still compiling after this long fails its request with a 400 (the size checks above
# catch what is known to be slow; this bounds what they miss).
GRAMMAR_COMPILE_TIMEOUT_S = 60.0

# Jump-forward asks a grammar for at most this many forced characters per jump; the rest is
# jumped on a later step. Each jump is further capped by the request's remaining budget.
JUMP_CHUNK_CHARS = 1024

# JSON-schema keywords whose value is a minimum count of items / characters / properties: text
# that the schema forces to exist.
MIN_COUNT_KEYWORDS = ("minItems", "minLength", "minProperties", "minContains")


def forced_text_error(kind: str, forced: int, largest_count: int) -> ValueError:
    return ValueError(
        f"{kind} grammar forces up to {forced} characters without sampling (its largest repetition "
        f"count is {largest_count}), over the limit of {MAX_FORCED_CHARS} (MAX_FORCED_CHARS); "
        f"lower the repetition counts"
    )


def fsm_size_error(positions: int, largest_count: int) -> ValueError:
    return ValueError(
        f"regex expands to {positions} character positions (its largest repetition count is "
        f"{largest_count}), over the fsm grammar backend's limit of {MAX_FSM_REGEX_POSITIONS} "
        f"(MAX_FSM_REGEX_POSITIONS); lower the repetition counts (maxLength, maxItems, {{m,n}}) "
        f"or use --grammar-backend xgrammar"
    )


def empty_language_error(kind: str) -> ValueError:
    return ValueError(f"{kind} grammar matches no string at all; nothing could be generated")


def check_schema_counts(schema: Any) -> None:
    """Refuse a JSON schema whose min* keyword alone forces more than MAX_FORCED_CHARS."""
    for where, key, value in _min_counts(schema, "#"):
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_FORCED_CHARS:
            raise ValueError(
                f"json_schema {key} = {value} at {where} is over the limit of {MAX_FORCED_CHARS} "
                f"(MAX_FORCED_CHARS): a value that long must be generated in full"
            )


def _min_counts(node: Any, where: str) -> Iterator[Tuple[str, str, Any]]:
    """(path, keyword, value) of every min-count keyword in a schema, nested ones included."""
    stack = [(node, where)]
    while stack:
        current, path = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if key in MIN_COUNT_KEYWORDS:
                    yield path, key, value
                stack.append((value, f"{path}/{key}"))
        elif isinstance(current, list):
            stack.extend((value, f"{path}/{i}") for i, value in enumerate(current))
