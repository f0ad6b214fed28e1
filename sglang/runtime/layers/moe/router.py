"""Which experts each token goes to, and with what weight.

`select_experts` turns router logits [tokens, experts] into (weights [tokens, k] float32,
ids [tokens, k] int64). The variants the served families use:

- softmax over all experts, then top-k (Mixtral, Qwen-MoE); `renormalize` rescales the k
  weights to sum to 1 (Mixtral always, Qwen when the config's `norm_topk_prob` says so);
- grouped top-k (DeepSeek): experts form `num_expert_group` groups and only the `topk_group`
  best groups compete; a group's score is the sum of its two best (bias-corrected) experts
  (V3, sigmoid scores) or its best expert (V2's group-limited greedy, softmax scores);
  `correction_bias` moves the choice but not the weights;
- `routed_scaling_factor` multiplies the final weights (DeepSeek).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

SCORING_FUNCS = ("softmax", "sigmoid")
GROUP_SCORES = ("top2_sum", "max")


@dataclass(frozen=True)
class RouterConfig:
    top_k: int
    renormalize: bool = True
    scoring_func: str = "softmax"
    num_expert_group: Optional[int] = None  # grouped top-k when set (with topk_group)
    topk_group: Optional[int] = None
    group_score: str = "top2_sum"
    routed_scaling_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.scoring_func not in SCORING_FUNCS:
            raise ValueError(f"scoring_func must be one of {SCORING_FUNCS}, got {self.scoring_func!r}")
        if self.top_k < 1:
            raise ValueError(f"num_experts_per_tok must be >= 1, got {self.top_k}")
        if self.group_score not in GROUP_SCORES:
            raise ValueError(f"group_score must be one of {GROUP_SCORES}, got {self.group_score!r}")
        if (self.num_expert_group is None) != (self.topk_group is None):
            raise ValueError("grouped routing needs both n_group and topk_group (or neither)")


def _scores(logits: torch.Tensor, scoring_func: str) -> torch.Tensor:
    logits = logits.float()
    return torch.softmax(logits, dim=-1) if scoring_func == "softmax" else torch.sigmoid(logits)


def _group_mask(choice: torch.Tensor, num_groups: int, topk_group: int, group_score: str) -> torch.Tensor:
    """[tokens, experts] bool: experts in each token's `topk_group` best groups."""
    tokens, experts = choice.shape
    if experts % num_groups:
        raise ValueError(f"n_routed_experts={experts} is not divisible by n_group={num_groups}")
    grouped = choice.view(tokens, num_groups, experts // num_groups)
    if group_score == "max":
        group_scores = grouped.max(dim=-1).values
    else:
        group_scores = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(dim=-1)
    best = group_scores.topk(topk_group, dim=-1).indices
    keep = torch.zeros(tokens, num_groups, dtype=torch.bool, device=choice.device)
    keep.scatter_(1, best, True)
    return keep.unsqueeze(-1).expand_as(grouped).reshape(tokens, experts)


def select_experts(router_logits: torch.Tensor, cfg: RouterConfig,
                   correction_bias: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weights [T, k] float32, expert ids [T, k] int64) for router logits [T, E]."""
    if cfg.top_k > router_logits.shape[-1]:
        raise ValueError(f"num_experts_per_tok={cfg.top_k} exceeds the {router_logits.shape[-1]} experts")
    scores = _scores(router_logits, cfg.scoring_func)
    choice = scores if correction_bias is None else scores + correction_bias.float()
    if cfg.num_expert_group is not None:
        mask = _group_mask(choice, cfg.num_expert_group, cfg.topk_group, cfg.group_score)
        choice = choice.masked_fill(~mask, float("-inf"))
    ids = choice.topk(cfg.top_k, dim=-1).indices
    weights = scores.gather(1, ids)  # the bias and the group mask choose; weights stay unbiased
    if cfg.renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    if cfg.routed_scaling_factor != 1.0:
        weights = weights * cfg.routed_scaling_factor
    return weights, ids
