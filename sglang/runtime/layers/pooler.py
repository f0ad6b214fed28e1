"""Pooling of final hidden states into one vector per request (embedding and reward models).

A pooling model's forward pass returns, per request of an extend batch, one vector over the
tokens that pass computed: the last token's state (`last`) or the sum of the states (`mean`).
A long prompt may be prefilled in chunks, so the scheduler accumulates these per request
(`PoolingState`) and finishes them once the whole prompt is in: mean = sum / prompt length,
then L2 normalization when the checkpoint's sentence-transformers config has a Normalize module.

Which rule applies comes from the checkpoint (`modules.json` + the Pooling module's
`config.json`, as sentence-transformers writes them); without one: last token, normalized (the
e5-mistral / gte-Qwen2 convention). `--embedding-pooling` / `--embedding-normalize` override it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from sglang.runtime.layers.logits_processor import LogitsProcessorOutput

logger = logging.getLogger(__name__)

POOLING_METHODS = ("last", "mean")
_ST_POOLING = "sentence_transformers.models.Pooling"
_ST_NORMALIZE = "sentence_transformers.models.Normalize"
# sentence-transformers' pooling_mode_* flags -> our method; any other mode is refused.
_ST_MODES = {"pooling_mode_lasttoken": "last", "pooling_mode_mean_tokens": "mean"}


@dataclass(frozen=True)
class PoolingConfig:
    method: str = "last"  # one of POOLING_METHODS
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.method not in POOLING_METHODS:
            raise ValueError(f"pooling method must be one of {POOLING_METHODS}, got {self.method!r}")


def _read_json(path: str) -> Optional[object]:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _method_from_st_pooling(config: dict, where: str) -> str:
    on = [key for key, value in config.items() if key.startswith("pooling_mode_") and value]
    methods = {_ST_MODES[key] for key in on if key in _ST_MODES}
    unknown = [key for key in on if key not in _ST_MODES]
    if unknown or len(methods) != 1:
        raise ValueError(f"{where} asks for pooling {on or 'none'}; supported: exactly one of "
                         f"{sorted(_ST_MODES)} (or pass --embedding-pooling last|mean)")
    return methods.pop()


def read_sentence_transformers_pooling(model_path: str, method: str = "auto") -> Optional[PoolingConfig]:
    """The pooling rule of a sentence-transformers checkpoint directory, or None without one.
    A `method` other than "auto" replaces the checkpoint's (which is then not checked)."""
    modules = _read_json(os.path.join(model_path, "modules.json")) if os.path.isdir(model_path) else None
    if not isinstance(modules, list):
        return None
    types = [str(m.get("type", "")) for m in modules if isinstance(m, dict)]
    pooling = next((m for m in modules if isinstance(m, dict) and m.get("type") == _ST_POOLING), None)
    if pooling is None:
        return None
    where = os.path.join(model_path, str(pooling.get("path", "")), "config.json")
    config = _read_json(where)
    if not isinstance(config, dict):
        raise ValueError(f"modules.json names a Pooling module but {where} is missing or not a JSON object")
    chosen = _method_from_st_pooling(config, where) if method == "auto" else method
    return PoolingConfig(chosen, normalize=_ST_NORMALIZE in types)


def resolve_pooling_config(model_path: str, method: str = "auto", normalize: str = "auto") -> PoolingConfig:
    """The checkpoint's rule (default last + normalized when it has none), with `method`
    ("auto"|"last"|"mean") and `normalize` ("auto"|"true"|"false") overriding it."""
    found = read_sentence_transformers_pooling(model_path, method)
    base = found or PoolingConfig()
    chosen = PoolingConfig(base.method if method == "auto" else method,
                           base.normalize if normalize == "auto" else normalize == "true")
    logger.info("embedding pooling: %s%s (%s)", chosen.method, ", L2-normalized" if chosen.normalize else "",
                "sentence-transformers config" if found else "default: no modules.json")
    return chosen


@dataclass
class PoolerOutput:
    """Per request of the batch, in batch order: [bs, dim] float32 vectors over this pass's tokens
    (the last token's state, or the sum of the states for mean pooling)."""

    vectors: torch.Tensor
    additive: bool  # True: chunks add up (mean); False: the final chunk's vector is the result


class PoolingState:
    """One request's pooled vector accumulated over its prefill chunks (kept on the request)."""

    def __init__(self) -> None:
        self.vector: Optional[torch.Tensor] = None
        self.num_tokens = 0

    def add(self, vector: torch.Tensor, num_tokens: int, additive: bool, restart: bool) -> None:
        """`restart`: the chunk starts at position 0 (a paused request recomputes from scratch)."""
        if restart or self.vector is None or not additive:
            self.vector, self.num_tokens = vector, num_tokens
        else:
            self.vector, self.num_tokens = self.vector + vector, self.num_tokens + num_tokens


class Pooler(nn.Module):
    def __init__(self, config: PoolingConfig = PoolingConfig()):
        super().__init__()
        self.config = config

    @property
    def needs_all_tokens(self) -> bool:
        """Mean pooling reads every prompt token's state: a cached prefix would skip some."""
        return self.config.method == "mean"

    def forward(self, hidden_states: torch.Tensor, forward_batch) -> PoolerOutput:
        if not forward_batch.forward_mode.is_extend():
            raise ValueError("pooling models run prefill (extend) passes only")
        if self.config.method == "last":
            vectors = hidden_states[forward_batch.last_token_indices()]
            return PoolerOutput(vectors.float(), additive=False)
        lens = forward_batch.extend_seq_lens
        segment = torch.repeat_interleave(torch.arange(lens.shape[0], device=lens.device), lens)
        sums = torch.zeros(lens.shape[0], hidden_states.shape[-1], dtype=torch.float32, device=hidden_states.device)
        sums.index_add_(0, segment, hidden_states.float())
        return PoolerOutput(sums, additive=True)

    def finish(self, state: PoolingState) -> torch.Tensor:
        """The request's embedding once its whole prompt was pooled."""
        vector = state.vector
        if self.config.method == "mean":
            vector = vector / max(state.num_tokens, 1)
        if self.config.normalize:
            vector = nn.functional.normalize(vector, p=2.0, dim=-1)
        return vector


def pooled_output(pooled: PoolerOutput) -> LogitsProcessorOutput:
    """A pooling model's forward result: no logits (nothing is sampled), the pooled vectors."""
    return LogitsProcessorOutput(next_token_logits=None, pooled=pooled)


def finished_vectors(pooler: Pooler, states: List[PoolingState]) -> List[List[float]]:
    """Finish several requests at once: one host copy for the batch."""
    if not states:
        return []
    return torch.stack([pooler.finish(s) for s in states]).cpu().tolist()
