"""Choice methods for `select`: pick one of several continuations from their token logprobs.

Inputs, all indexed by choice:
  * ``normalized_prompt_logprobs[i]`` — the backend's length-normalised score (kept in meta_info;
    used only as the mean of a choice that has no tokens);
  * ``input_token_logprobs[i]`` — logprobs of the choice's tokens given the prompt (conditional);
  * ``output_token_logprobs[i]`` — logprobs of any generated tokens (kept in meta_info);
  * ``unconditional_token_logprobs[i]`` — the same choice tokens scored without the prompt.
A token logprob may be a float or a tuple/list whose first item is the float (the
``(logprob, token_id, text)`` form of the server), so backend output can be passed through.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

NEG_INF = float("-inf")


@dataclass
class ChoicesDecision:
    decision: str
    meta_info: dict[str, Any] = field(default_factory=dict)


def _floats(logprobs: Sequence[Any]) -> list[float]:
    return [float(x[0]) if isinstance(x, (tuple, list)) else float(x) for x in logprobs]


def _mean(values: list[float], fallback: float | None = None) -> float:
    if values:
        return math.fsum(values) / len(values)
    return NEG_INF if fallback is None else float(fallback)


def _argmax(scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the first. NaN never wins."""
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best] or (math.isnan(scores[best]) and not math.isnan(s)):
            best = i
    return best


class ChoicesSamplingMethod(ABC):
    """Base class: subclasses implement `__call__` and may require unconditional logprobs."""

    @property
    def requires_unconditional_logprobs(self) -> bool:
        return False

    @abstractmethod
    def __call__(self, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[Any]], output_token_logprobs: list[list[Any]],
                 unconditional_token_logprobs: list[list[Any]] | None = None
                 ) -> ChoicesDecision:
        """Pick one of `choices` from the logprobs the backend returned."""

    @staticmethod
    def _check(choices: list[str], *per_choice: Sequence[Any] | None) -> None:
        if not choices:
            raise ValueError("select needs at least one choice")
        for seq in per_choice:
            if seq is not None and len(seq) != len(choices):
                raise ValueError(f"expected {len(choices)} per-choice entries, got {len(seq)}")

    @staticmethod
    def _means(normalized_prompt_logprobs: Sequence[float],
               token_logprobs: list[list[float]]) -> list[float]:
        fallbacks = list(normalized_prompt_logprobs) or [None] * len(token_logprobs)
        return [_mean(lp, fb) for lp, fb in zip(token_logprobs, fallbacks)]


class TokenLengthNormalized(ChoicesSamplingMethod):
    """Pick the choice with the highest mean logprob over its tokens (ties: the first).

    A choice without tokens scores its `normalized_prompt_logprobs` entry (-inf if none given).
    """

    def __call__(self, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[Any]], output_token_logprobs: list[list[Any]],
                 unconditional_token_logprobs: list[list[Any]] | None = None
                 ) -> ChoicesDecision:
        self._check(choices, input_token_logprobs, normalized_prompt_logprobs or None)
        scores = self._means(normalized_prompt_logprobs, [_floats(x) for x in input_token_logprobs])
        return ChoicesDecision(choices[_argmax(scores)], {
            "scores": scores, "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs,
            "output_token_logprobs": output_token_logprobs})


class GreedyTokenSelection(ChoicesSamplingMethod):
    """Compare choices token by token, keeping those with the best logprob at each position.

    Exact rule: start with all choices as candidates. At position j = 0, 1, ... each candidate
    scores its j-th token logprob, or its mean token logprob once it has run out of tokens
    (a choice with no tokens at all scores -inf). Only candidates with the maximum score
    survive (choices sharing a token prefix have equal logprobs there, so they stay together).
    Stop when one candidate is left or every candidate has run out; the first (lowest index)
    survivor wins.
    """

    def __call__(self, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[Any]], output_token_logprobs: list[list[Any]],
                 unconditional_token_logprobs: list[list[Any]] | None = None
                 ) -> ChoicesDecision:
        self._check(choices, input_token_logprobs)
        lps = [_floats(x) for x in input_token_logprobs]
        means = [_mean(lp) for lp in lps]
        candidates = list(range(len(choices)))
        j = 0
        while len(candidates) > 1 and any(j < len(lps[i]) for i in candidates):
            col = {i: (lps[i][j] if j < len(lps[i]) else means[i]) for i in candidates}
            best = max(col.values())
            candidates = [i for i in candidates if col[i] == best] or candidates[:1]
            j += 1
        return ChoicesDecision(choices[candidates[0]], {
            "greedy_survivors": candidates, "compared_positions": j, "means": means,
            "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs,
            "output_token_logprobs": output_token_logprobs})


class UnconditionalLikelihoodNormalized(ChoicesSamplingMethod):
    """Pick the choice maximising mean(conditional − unconditional logprob) over its tokens.

    Subtracting the prompt-free likelihood removes the prior that favours inherently likely
    strings (common words, short tokens). Ties: the first; a choice without tokens scores -inf.
    """

    @property
    def requires_unconditional_logprobs(self) -> bool:
        return True

    def __call__(self, choices: list[str], normalized_prompt_logprobs: list[float],
                 input_token_logprobs: list[list[Any]], output_token_logprobs: list[list[Any]],
                 unconditional_token_logprobs: list[list[Any]] | None = None
                 ) -> ChoicesDecision:
        if unconditional_token_logprobs is None:
            raise ValueError("unconditional_likelihood_normalized needs unconditional logprobs")
        self._check(choices, input_token_logprobs, unconditional_token_logprobs)
        scores = []
        for cond, uncond in zip(input_token_logprobs, unconditional_token_logprobs):
            c, u = _floats(cond), _floats(uncond)
            if len(c) != len(u):
                raise ValueError(f"conditional/unconditional lengths differ: {len(c)} vs {len(u)}")
            scores.append(_mean([a - b for a, b in zip(c, u)]))
        return ChoicesDecision(choices[_argmax(scores)], {
            "scores": scores, "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs,
            "output_token_logprobs": output_token_logprobs,
            "unconditional_token_logprobs": unconditional_token_logprobs})


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()

__all__ = [
    "ChoicesDecision",
    "ChoicesSamplingMethod",
    "GreedyTokenSelection",
    "TokenLengthNormalized",
    "UnconditionalLikelihoodNormalized",
    "greedy_token_selection",
    "token_length_normalized",
    "unconditional_likelihood_normalized",
]
