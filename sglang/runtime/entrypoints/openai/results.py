"""Runtime results (meta_info dicts) -> OpenAI response pieces: finish reasons, usage, logprobs.

Logprob entries from the tokenizer manager are [logprob, token_id, token_text] (the server asks
for token text), top-logprob positions are lists of such entries.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from sglang.runtime.entrypoints.openai.protocol import (
    CompletionLogprobs,
    PromptTokensDetails,
    TokenLogprob,
    TopLogprob,
    UsageInfo,
)

# OpenAI reports impossible tokens as -9999.0; -inf is not representable in JSON.
MIN_LOGPROB = -9999.0


def finish_fields(meta: Dict[str, Any]) -> Tuple[Optional[str], Any]:
    """(finish_reason, matched_stop): 'stop' | 'length' | 'abort' | None, and the matched stop
    string or token id (upstream's `matched_stop`)."""
    reason = meta.get("finish_reason")
    if not reason:
        return None, None
    kind = reason.get("type")
    if kind == "stop":
        return "stop", reason.get("matched")
    return kind, None


def usage(outputs: Sequence[Dict[str, Any]], n: int) -> UsageInfo:
    """Prompt tokens count once per prompt (outputs are prompt-major, n per prompt)."""
    firsts = [out["meta_info"] for out in outputs[::n]]
    prompt = sum(m["prompt_tokens"] for m in firsts)
    completion = sum(out["meta_info"]["completion_tokens"] for out in outputs)
    cached = sum(m.get("cached_tokens", 0) for m in firsts)
    return UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))


def _value(lp: Optional[float]) -> Optional[float]:
    return None if lp is None else max(float(lp), MIN_LOGPROB)


def _text(entry: Sequence[Any]) -> str:
    return entry[2] if entry[2] is not None else ""


# ---------------------------------------------------------------------------------- completions
def completion_entries(meta: Dict[str, Any], echo: bool, out_from: int = 0) -> Tuple[List, List]:
    """(token entries, top-logprob positions): the prompt's first when echoing (only on the first
    piece of a stream), then output entries from index `out_from`."""
    tokens = list(meta.get("output_token_logprobs") or [])[out_from:]
    tops = list(meta.get("output_top_logprobs") or [])[out_from:]
    if echo:
        tokens = list(meta.get("input_token_logprobs") or []) + tokens
        tops = list(meta.get("input_top_logprobs") or []) + tops
    return tokens, tops


def completion_logprobs(tokens: List, tops: List, offsets: List[int]) -> CompletionLogprobs:
    """`offsets`: each token's text_offset in the returned text (see text_offsets.py)."""
    out = CompletionLogprobs(text_offset=list(offsets))
    for i, entry in enumerate(tokens):
        out.tokens.append(_text(entry))
        out.token_logprobs.append(_value(entry[0]))
        top = tops[i] if i < len(tops) else None
        out.top_logprobs.append(_top_dict(top) if top else None)
    return out


def _top_dict(top: List) -> Dict[str, Optional[float]]:
    # Distinct tokens may share a text (e.g. partial UTF-8 shows as U+FFFD): keep the likeliest.
    out: Dict[str, Optional[float]] = {}
    for entry in top:
        out.setdefault(_text(entry), _value(entry[0]))
    return out


# ---------------------------------------------------------------------------------- chat
def chat_logprobs(meta: Dict[str, Any], out_from: int = 0) -> List[TokenLogprob]:
    tokens = list(meta.get("output_token_logprobs") or [])[out_from:]
    tops = list(meta.get("output_top_logprobs") or [])[out_from:]
    content = []
    for i, entry in enumerate(tokens):
        top = tops[i] if i < len(tops) else None
        content.append(TokenLogprob(
            token=_text(entry), logprob=_value(entry[0]) or 0.0, bytes=list(_text(entry).encode()),
            top_logprobs=[TopLogprob(token=_text(t), logprob=_value(t[0]) or 0.0, bytes=list(_text(t).encode()))
                          for t in (top or [])],
        ))
    return content


def num_output_logprobs(meta: Dict[str, Any]) -> int:
    return len(meta.get("output_token_logprobs") or [])
