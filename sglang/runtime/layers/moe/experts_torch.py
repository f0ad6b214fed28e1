"""The experts' computation in plain torch: tokens grouped by expert, one GEMM pair per expert.

Each (token, slot) pair of the routing is one row of work. `group_by_expert` orders the rows by
expert (stable, so a token's rows keep their slot order inside an expert), which makes every
expert's rows one contiguous segment; the experts then run as dense GEMMs over their segments
and the rows go back to (token, slot) order, where the k slot outputs are weighted and summed.
This is the twin a grouped-GEMM kernel is checked against, and the path on CPU.

Sizing the segments reads the expert counts on the host, which a CUDA graph capture forbids;
`fused_experts_dense` is the capture-safe form: every expert runs on every token and a dense
[tokens, experts] weight matrix (zero where a token did not pick the expert) combines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Activation = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ExpertGrouping:
    """Rows of (token, slot) pairs sorted by expert."""

    order: torch.Tensor  # [T*k] flat (token*k + slot) index of each sorted row
    offsets: torch.Tensor  # [E+1] start of each expert's segment in the sorted rows (int64)

    def token_rows(self, top_k: int) -> torch.Tensor:
        """Token index of each sorted row."""
        return self.order // top_k


def expert_counts(flat_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Rows per expert (int64), without bincount's device-to-host read of the largest id."""
    counts = torch.zeros(num_experts, dtype=torch.int64, device=flat_ids.device)
    return counts.scatter_add_(0, flat_ids.long(), torch.ones_like(flat_ids, dtype=torch.int64))


def group_by_expert(topk_ids: torch.Tensor, num_experts: int) -> ExpertGrouping:
    """Group the routing's (token, slot) rows by expert id (topk_ids [T, k], ids in [0, E))."""
    flat = topk_ids.reshape(-1)
    order = torch.sort(flat, stable=True).indices
    counts = expert_counts(flat, num_experts)
    offsets = torch.zeros(num_experts + 1, dtype=torch.int64, device=flat.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return ExpertGrouping(order, offsets)


def fused_experts_torch(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                        topk_ids: torch.Tensor, activation: Activation) -> torch.Tensor:
    """sum_j weight[t, j] * down_e(act(gate_up_e(x[t]))) with e = ids[t, j]; x [T, H] -> [T, H].

    w13 [E, 2*I, H] holds [gate | up] rows per expert, w2 [E, H, I]; `activation` maps
    [rows, 2*I] -> [rows, I] (e.g. SiLU(gate) * up)."""
    tokens, top_k = topk_ids.shape
    grouping = group_by_expert(topk_ids, w13.shape[0])
    rows = x[grouping.token_rows(top_k)]
    out = torch.empty(rows.shape[0], w2.shape[1], dtype=x.dtype, device=x.device)
    bounds = grouping.offsets.tolist()
    for expert, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        if start == end:
            continue
        hidden = activation(rows[start:end] @ w13[expert].t())
        out[start:end] = hidden @ w2[expert].t()
    unsorted = torch.empty_like(out)
    unsorted[grouping.order] = out
    weighted = unsorted.view(tokens, top_k, -1) * topk_weights.to(out.dtype).unsqueeze(-1)
    return weighted.sum(dim=1)


def fused_experts_dense(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                        topk_ids: torch.Tensor, activation: Activation) -> torch.Tensor:
    """`fused_experts_torch` without host reads (CUDA-graph capturable): all experts on all tokens."""
    combine = torch.zeros(x.shape[0], w13.shape[0], dtype=x.dtype, device=x.device)
    combine.scatter_add_(1, topk_ids.long(), topk_weights.to(x.dtype))
    out = torch.zeros(x.shape[0], w2.shape[1], dtype=x.dtype, device=x.device)
    for expert in range(w13.shape[0]):
        out += combine[:, expert:expert + 1] * (activation(x @ w13[expert].t()) @ w2[expert].t())
    return out
