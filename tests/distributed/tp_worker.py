"""What each spawned rank runs in the tensor-parallel tests: load a checkpoint sharded over its
group, run a fixed extend + greedy decode script through KVHarness, and save the logits.

One spawn of 4 ranks covers TP=4 (the world group) and TP=2 (groups {0, 1} and {2, 3}), so each
model costs one process start-up."""

from __future__ import annotations

import os
from typing import Dict, List

import torch
import torch.distributed as dist

from sglang.runtime.distributed import TensorParallel, kv_heads_per_rank
from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from tests.models.harness import KVHarness

DECODE_STEPS = 3


def prompts_for(vocab_size: int) -> List[List[int]]:
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(3, vocab_size, (n,), generator=gen).tolist() for n in (11, 5, 17)]


@torch.inference_mode()
def run_script(model_path: str, tp: TensorParallel) -> Dict[str, torch.Tensor]:
    """Prompt logits (input_logits), then the next-token logits of DECODE_STEPS greedy steps."""
    torch.manual_seed(0)
    cfg = ModelConfig(model_path, dtype="float32", device="cpu")
    model = load_model(cfg, "auto", "cpu", tp=tp)
    harness = KVHarness(model, cfg.num_hidden_layers, kv_heads_per_rank(cfg.num_key_value_heads, tp.size),
                        cfg.head_dim, torch.float32, seed=1)
    prompts = prompts_for(cfg.vocab_size)
    rows = [harness.new_request() for _ in prompts]
    out = harness.extend(rows, prompts, return_logprob=True)
    result = {"input_logits": out.input_logits.clone()}
    steps: List[torch.Tensor] = [out.next_token_logits.clone()]
    for _ in range(DECODE_STEPS):
        tokens = steps[-1].argmax(dim=-1).tolist()
        steps.append(harness.decode(rows, tokens).next_token_logits.clone())
    result["next_token_logits"] = torch.stack(steps)
    if hasattr(model, "vision_tower"):  # vision-language: the tower's image features too
        size = model.vision_tower.embeddings.image_size
        tiles = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
        result["image_features"] = model.image_features(tiles)
    return result


def _rank_main(rank: int, world: int, init_method: str, model_path: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        full = run_script(model_path, TensorParallel(rank, world, dist.group.WORLD))
        if rank == 0:
            torch.save(full, os.path.join(out_dir, f"tp{world}.pt"))
        # new_group must be entered by every rank, in the same order, for every group.
        pairs = [dist.new_group([r, r + 1]) for r in range(0, world, 2)]
        pair = rank // 2
        half = run_script(model_path, TensorParallel(rank % 2, 2, pairs[pair]))
        if rank % 2 == 0:
            torch.save(half, os.path.join(out_dir, f"tp2_group{pair}.pt"))
    finally:
        shutdown()


def shutdown() -> None:
    """Meet every rank before tearing gloo down: a rank that destroys its groups while a peer still
    holds pairs open with it can abort the peer ("terminate called without an active exception")."""
    dist.barrier()
    dist.destroy_process_group()


def rendezvous() -> str:
    """A file:// init method in a fresh directory: unlike a probed free TCP port, no other process
    can take it between the probe and the ranks' connect (a loaded CI box did exactly that)."""
    import tempfile

    return f"file://{tempfile.mkdtemp(prefix='sglang-tp-')}/rendezvous"


def run_sharded(model_path: str, out_dir: str, world: int = 4) -> Dict[str, Dict[str, torch.Tensor]]:
    """Spawn `world` ranks; returns {'tp4': ..., 'tp2_group0': ..., ...} as saved by the ranks."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(world, rendezvous(), model_path, out_dir), nprocs=world, join=True)
    return {name[:-3]: torch.load(os.path.join(out_dir, name)) for name in sorted(os.listdir(out_dir))}


def assert_same(reference: Dict[str, torch.Tensor], other: Dict[str, torch.Tensor], what: str,
                rel: float = 1e-5) -> None:
    """Equal to within float32 reassociation: the shards sum the matmuls in another order, which
    moves logits of magnitude ~10 by ~1e-5, so the bound is `rel` times the largest |logit|."""
    for key in reference:
        bound = rel * reference[key].abs().max().item()
        diff = (reference[key] - other[key]).abs().max().item()
        assert diff <= bound, f"{what}: {key} differs from TP=1 by {diff:.3g} (bound {bound:.3g})"
    # Greedy tokens at every step agree too (what the ranks and TP=1 would sample).
    assert torch.equal(reference["next_token_logits"].argmax(-1), other["next_token_logits"].argmax(-1)), what
