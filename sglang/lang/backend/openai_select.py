"""Select scoring for the OpenAI backend, as pure functions over plain response data.

Completion models (exact): each choice is scored by echoing `prompt + choice` with
`max_tokens=0, logprobs=1`; the choice's tokens are those covering any character after the
prompt, including a token that straddles the boundary (token healing).

Chat models (approximate): one greedy call with `top_logprobs=20`; a choice gains the logprob
of each position where the generated token, or else one of the top candidates, continues its
remaining text. Only the generated path is observed, so a choice is followed past a position
only if the generated token there is the one that continues it.

Logprob entries handed to the choice methods are `[logprob, None, token_text]` (the runtime's
`[logprob, token_id, text]` shape; the OpenAI API does not report token ids).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from sglang.lang.choices import ChoicesDecision, ChoicesSamplingMethod

Entry = list  # [logprob, None, token_text]
# One generated position: (token, logprob, [(candidate token, logprob), ...]).
Position = tuple[str, float, list[tuple[str, float]]]


# ------------------------------------------------------------------------- completion models
def choice_entries(tokens: Sequence[str], logprobs: Sequence[Optional[float]],
                   offsets: Sequence[int], full_text: str, boundary: int) -> tuple[list[Entry], bool]:
    """Entries of the tokens covering `full_text[boundary:]`, and whether the offsets lined up.

    Offsets are re-anchored at the end of the text: a server may count text the prompt does
    not contain (ours counts the BOS token's text), and the choice is always at the end.
    Tokens without a logprob (the first token of a context-free prompt) are dropped.
    """
    if not tokens:
        return [], True
    end = offsets[-1] + len(tokens[-1])
    shift = end - len(full_text)
    exact = "".join(tokens).endswith(full_text)
    out: list[Entry] = []
    for tok, lp, off in zip(tokens, logprobs, offsets):
        start = off - shift
        if (start >= boundary or start + len(tok) > boundary) and lp is not None:
            out.append([float(lp), None, tok])
    return out, exact


def mean_logprob(entries: Sequence[Entry]) -> float:
    if not entries:
        return float("-inf")
    return math.fsum(e[0] for e in entries) / len(entries)


def align_unconditional(cond: list[Entry], uncond: list[Entry]) -> tuple[list[Entry], bool]:
    """Unconditional entries matching `cond` one to one.

    The choice alone can tokenize differently from the healed choice after the prompt; then
    every position gets the unconditional mean, so the method's score becomes
    mean(cond) - mean(uncond). No unconditional logprob at all (no BOS to condition on)
    contributes 0.
    """
    if len(uncond) == len(cond):
        return uncond, True
    mean = mean_logprob(uncond) if uncond else 0.0
    return [[mean, None, e[2]] for e in cond], False


def decide_exact(choices: list[str], cond: list[list[Entry]], uncond: Optional[list[list[Entry]]],
                 method: ChoicesSamplingMethod) -> ChoicesDecision:
    aligned: Optional[list[list[Entry]]] = None
    approx: list[int] = []
    if uncond is not None:
        aligned = []
        for i, (c, u) in enumerate(zip(cond, uncond)):
            entries, same = align_unconditional(c, u)
            aligned.append(entries)
            if not same:
                approx.append(i)
    normalized = [mean_logprob(c) for c in cond]
    decision = method(choices, normalized, cond, [[] for _ in choices], aligned)
    meta = dict(decision.meta_info)
    meta["select_method"] = "echo_logprobs"
    if approx:
        meta["unconditional_mean_aligned"] = approx
    return ChoicesDecision(decision.decision, meta)


# ------------------------------------------------------------------------------ chat models
@dataclass
class Observation:
    """What the top-logprob walk saw of one choice."""

    covered: int = 0  # characters of the choice matched by observed tokens
    entries: list[Entry] = field(default_factory=list)
    diverged_at: Optional[int] = None  # position where the generated path left the choice


def _match(token: str, rest: str, first: bool) -> int:
    """Characters of `rest` that `token` consumes (0: it does not continue `rest`).

    The first token may carry leading whitespace the choice lacks (" Paris" for "Paris").
    """
    if token and rest.startswith(token):
        return len(token)
    if first and token[:1].isspace() and not rest[:1].isspace():
        stripped = token.lstrip()
        if stripped and rest.startswith(stripped):
            return len(stripped)
    return 0


def walk_choice(choice: str, positions: Sequence[Position]) -> Observation:
    obs = Observation()
    rest = choice
    for j, (token, logprob, tops) in enumerate(positions):
        if not rest:
            break
        first = not obs.entries
        used = _match(token, rest, first)
        if used:  # the generated path continues the choice: keep following it
            obs.entries.append([float(logprob), None, token])
            rest = rest[used:]
            continue
        # The path leaves the choice here; the best top candidate that continues it counts once.
        best = max(((lp, t, _match(t, rest, first)) for t, lp in tops if _match(t, rest, first)),
                   default=None)
        if best is not None:
            obs.entries.append([float(best[0]), None, best[1]])
            rest = rest[best[2]:]
        obs.diverged_at = j
        break
    obs.covered = len(choice) - len(rest)
    return obs


def decide_top_logprobs(choices: list[str], positions: Sequence[Position],
                        method: ChoicesSamplingMethod) -> ChoicesDecision:
    """Rank by covered fraction, then let `method` pick among the best-covered choices."""
    if method.requires_unconditional_logprobs:
        raise ValueError(f"{type(method).__name__} needs unconditional logprobs, which a chat "
                         f"model's top logprobs cannot give; use a completion model")
    observations = [walk_choice(c, positions) for c in choices]
    coverage = [o.covered / len(c) if c else 0.0 for o, c in zip(observations, choices)]
    best = max(coverage)
    group = [i for i, cov in enumerate(coverage) if cov == best]
    if best > 0 and len(group) > 1:
        sub = method([choices[i] for i in group],
                     [mean_logprob(observations[i].entries) for i in group],
                     [observations[i].entries for i in group], [[] for _ in group])
        winner = group[[choices[i] for i in group].index(sub.decision)]
    else:
        winner = group[0]
    meta: dict[str, Any] = {
        "select_method": "top_logprobs",
        "coverage": coverage,
        "scores": [mean_logprob(o.entries) for o in observations],
        "input_token_logprobs": [o.entries for o in observations],
        "diverged_at": [o.diverged_at for o in observations],
        "generated_text": "".join(p[0] for p in positions),
        "observed": best > 0,
    }
    return ChoicesDecision(choices[winner], meta)


def positions_from_content(content: Sequence[Any]) -> list[Position]:
    """OpenAI chat `logprobs.content` (objects or dicts) → plain positions."""
    out: list[Position] = []
    for item in content:
        get = item.get if isinstance(item, dict) else lambda k, _i=item: getattr(_i, k, None)
        tops = []
        for top in get("top_logprobs") or []:
            tget = top.get if isinstance(top, dict) else lambda k, _t=top: getattr(_t, k, None)
            tops.append((tget("token") or "", float(tget("logprob"))))
        out.append((get("token") or "", float(get("logprob")), tops))
    return out
