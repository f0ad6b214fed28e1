"""docs/sampling_params.md from `SamplingParams` and the request surfaces that feed it.

Names, types and defaults come from the dataclass; the OpenAI column from the OpenAI request
model and its field mapping; the `sgl.gen` column from gen's signature; every error message is
produced by running the real validation on an invalid example. Only the one-line meanings are
written here (`MEANINGS`), and rendering fails when a parameter has none or a meaning names a
parameter that no longer exists, so the page cannot drift from the code silently.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from typing import Any, Dict, List, Optional, Tuple

from sglang.tools.markdown import code, generated_notice, table

# The vocabulary size the error examples are checked against (SmolLM2-135M's, the docs' model).
EXAMPLE_VOCAB = 49152

# name -> what it does, in one or two sentences.
MEANINGS: Dict[str, str] = {
    "max_new_tokens": "Most tokens to generate. The request also ends at EOS, a stop condition, or the "
                      "context length. 0 generates nothing (useful to score a prompt with logprobs).",
    "min_new_tokens": "Generate at least this many tokens: EOS, `stop_token_ids` and stop strings do not "
                      "end the request before then.",
    "temperature": "Softmax temperature. 0 is greedy decoding (argmax); higher is more random.",
    "top_p": "Nucleus sampling: sample from the smallest set of tokens whose probability adds up to top_p.",
    "top_k": "Sample from the k most likely tokens; -1 means the whole vocabulary.",
    "min_p": "Drop tokens whose probability is below min_p times the most likely token's.",
    "frequency_penalty": "Subtract this times the number of times a token already appeared in the output "
                         "from its logit (positive values discourage repetition).",
    "presence_penalty": "Subtract this from the logit of every token that already appeared in the output.",
    "repetition_penalty": "Divide positive logits (multiply negative ones) of tokens seen in the prompt or "
                          "output by this; 1 turns it off, above 1 discourages repetition.",
    "stop": "A string or list of strings that end generation. The matched string is cut from the returned "
            "text unless `no_stop_trim`.",
    "stop_token_ids": "Token ids that end generation (in addition to the model's EOS tokens).",
    "ignore_eos": "Keep generating past EOS (benchmarks use it to get exact output lengths).",
    "skip_special_tokens": "Leave special tokens out of the returned text.",
    "spaces_between_special_tokens": "Put spaces between special tokens in the returned text.",
    "no_stop_trim": "Keep the matched stop string (or stop token's text) at the end of the returned text.",
    "logit_bias": "Token id (as a string or integer key) -> value added to its logit; -100 bans a token, "
                  "+100 forces it.",
    "n": "Number of completions of the prompt. The prompt is computed once and shared through the prefix "
         "cache.",
    "seed": "Seed of this request's sampling. The same seed gives the same tokens whatever else is in the "
            "batch.",
    "regex": "Constrain the output to match this regular expression "
             "([structured outputs](structured_outputs.md)).",
    "json_schema": "Constrain the output to JSON valid under this JSON Schema, given as a string "
                   "(`json.dumps(schema)`).",
    "ebnf": "Constrain the output to this EBNF grammar (rule `root` is the start; xgrammar's syntax).",
    "lark": ("Constrain the output to this grammar in Lark's syntax (rule `start` is the start); only on "
             "`--grammar-backend lark` (other backends answer 400 naming the flag). See "
             "[structured outputs](structured_outputs.md#grammars-in-lark-syntax)."),
    "stop_regex": "A regular expression (or list) whose match in the newest output ends generation; each "
                  "search is time-bounded.",
    "custom_params": "Accepted for upstream compatibility and not used: this runtime has no custom logit "
                     "processors.",
}

# name -> a sampling_params object that the validation refuses, to show its message.
ERROR_EXAMPLES: Dict[str, dict] = {
    "max_new_tokens": {"max_new_tokens": -1},
    "min_new_tokens": {"max_new_tokens": 8, "min_new_tokens": 16},
    "temperature": {"temperature": -0.5},
    "top_p": {"top_p": 0},
    "top_k": {"top_k": 0},
    "min_p": {"min_p": 1.5},
    "frequency_penalty": {"frequency_penalty": 3},
    "repetition_penalty": {"repetition_penalty": 0},
    "stop": {"stop": [""]},
    "stop_token_ids": {"stop_token_ids": [-1]},
    "ignore_eos": {"ignore_eos": "yes"},
    "logit_bias": {"logit_bias": {"42": 500}},
    "n": {"n": 0},
    "seed": {"seed": 1.5},
    "regex": {"regex": "[0-9]+", "ebnf": 'root ::= "a"'},
    "json_schema": {"json_schema": {"type": "object"}},
    "stop_regex": {"stop_regex": "(unclosed"},
}

# OpenAI request fields that feed a parameter besides the same-named pass-through ones.
OPENAI_SPECIAL = {
    "max_new_tokens": "`max_tokens` (chat: also `max_completion_tokens`)",
    "n": "`n`",
    "json_schema": "`json_schema`, or `response_format`",
}
# sgl.gen's names that differ from the runtime's (sampling_params_from_kwargs renames them).
GEN_RENAMED = {"max_new_tokens": "max_tokens", "min_new_tokens": "min_tokens"}


def check_meanings(names: List[str]) -> None:
    missing = [n for n in names if n not in MEANINGS]
    stale = [n for n in [*MEANINGS, *ERROR_EXAMPLES] if n not in names]
    if missing or stale:
        raise ValueError(f"sglang/tools/sampling_params_page.py (MEANINGS, ERROR_EXAMPLES) is out of date: describe "
                         f"{missing or 'nothing new'}; remove {stale or 'nothing'}")


def example_error(example: dict) -> str:
    """The message the real validation gives for `example` (which must be invalid)."""
    from sglang.runtime.sampling.sampling_params import SamplingParams

    try:
        SamplingParams.from_dict(example).verify(EXAMPLE_VOCAB)
    except ValueError as exc:
        return str(exc)
    raise ValueError(f"the error example {example} is accepted by SamplingParams now; change it in "
                     f"sglang/tools/sampling_params_page.py MEANINGS")


def _json_type(annotation: str) -> str:
    """A field annotation in JSON words: Optional[List[int]] -> 'list of integers'."""
    text = annotation.strip()
    inner = re.fullmatch(r"Optional\[(.*)\]", text)
    if inner:
        return _json_type(inner.group(1))
    union = re.fullmatch(r"Union\[(.*)\]", text)
    if union:
        return " or ".join(_json_type(part) for part in _split_args(union.group(1)))
    listed = re.fullmatch(r"List\[(.*)\]", text)
    if listed:
        return f"list of {_json_type(listed.group(1))}s"
    if text.startswith("Dict["):
        return "object"
    return {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "Any": "any"}.get(text, text)


def _split_args(text: str) -> List[str]:
    """Top-level comma-separated parts of a generic's arguments."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _openai_fields() -> Dict[str, str]:
    """Runtime parameter -> the OpenAI request field that sets it."""
    from sglang.runtime.entrypoints.openai import sampling as openai_sampling

    fields = {openai_sampling._RENAMED.get(name, name): code(name) for name in openai_sampling._PASSTHROUGH}
    return {**fields, **OPENAI_SPECIAL}


def _gen_kwargs() -> Dict[str, str]:
    """Runtime parameter -> the `sgl.gen` keyword that sets it."""
    from sglang.lang.api import gen
    from sglang.lang.ir import SglSamplingParams

    accepted = set(inspect.signature(gen).parameters)
    out = {}
    for name in SglSamplingParams.SAMPLING_KEYS:
        kwarg = GEN_RENAMED.get(name, name)
        if kwarg not in accepted:
            raise ValueError(f"sgl.gen has no keyword {kwarg!r} for {name}; update GEN_RENAMED")
        out[name] = code(kwarg)
    return out


def _default(f: dataclasses.Field) -> str:
    return "unset" if f.default is None else code(json.dumps(f.default))


def render() -> str:
    from sglang.runtime.sampling import sampling_params as sp
    from sglang.tools.gen_docs import REGENERATE

    fields = [f for f in dataclasses.fields(sp.SamplingParams) if f.init]
    names = [f.name for f in fields]
    check_meanings(names)
    openai, gen = _openai_fields(), _gen_kwargs()
    rows = [(code(f.name), _json_type(str(f.type)), _default(f), openai.get(f.name, "—"), gen.get(f.name, "—"),
             MEANINGS[f.name]) for f in fields]
    errors = [(code(name), code(json.dumps(example)), code(example_error(example)))
              for name, example in ERROR_EXAMPLES.items()]
    unknown = example_error({"max_tokens": 16})
    parts = [
        "# Sampling parameters",
        "",
        generated_notice(REGENERATE, ["sglang/runtime/sampling/sampling_params.py (SamplingParams)",
                                      "the OpenAI field mapping (runtime/entrypoints/openai/sampling.py)",
                                      "sgl.gen's signature", "the meanings in sglang/tools/sampling_params_page.py"]),
        "",
        "How a request's tokens are chosen and when generation stops. Names and defaults are upstream "
        "SGLang's. Where they go:",
        "",
        "- native API: the `sampling_params` object of `POST /generate` (one object, or a list with one "
        "per prompt of a batch); see [the native API](native_api.md);",
        "- offline engine: `engine.generate(prompt, sampling_params={...})`; see [the offline engine](offline_engine.md);",
        "- OpenAI-compatible API: request fields (column \"OpenAI field\"); the ones OpenAI does not define "
        "go in the `openai` client's `extra_body`; see [the OpenAI API](openai_api.md);",
        "- frontend language: `sgl.gen(...)` keywords (column \"sgl.gen\"), and the same names as "
        "defaults for every gen of a run: `program.run(..., temperature=0, max_new_tokens=64)`.",
        "",
        "## Parameters",
        "",
        table(("parameter", "type", "default", "OpenAI field", "sgl.gen", "meaning"), rows),
        "",
        "Greedy decoding is `temperature: 0` (any temperature below "
        f"{code(sp.GREEDY_TEMPERATURE_EPS)} is treated as 0). `stop` and `stop_regex` take at most "
        f"{sp.MAX_STOP_STRINGS} entries of at most {sp.MAX_STOP_STR_LEN} characters; `logit_bias` values "
        f"lie in [-{sp.MAX_LOGIT_BIAS:g}, {sp.MAX_LOGIT_BIAS:g}]. Only one of `regex`, `json_schema`, `ebnf`, "
        "`lark` may be set. A value of `null` means \"not given\" and keeps the default.",
        "",
        "## Errors",
        "",
        "Invalid parameters are refused before the request runs: the server answers HTTP 400 with the "
        "message below (in OpenAI's error shape on `/v1` routes), the Engine raises `ValueError`. An "
        "unknown name is refused too, listing the allowed ones; the most common case is OpenAI's name "
        "on the native API:",
        "",
        "```text",
        unknown,
        "```",
        "",
        f"Messages for one invalid example each (token ids checked against a vocabulary of {EXAMPLE_VOCAB}):",
        "",
        table(("parameter", "example", "message"), errors),
    ]
    return "\n".join(parts) + "\n"
