"""Test helpers: drive a model through extend/decode passes over real KV pools, and compute the
matching transformers reference logits."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import torch

from sglang.runtime.layers.attention.registry import create_attention_backend
from sglang.runtime.layers.logits_processor import LogitsProcessorOutput
from sglang.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool, TokenSlotAllocator
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode


class KVHarness:
    """Owns pools + an attention backend and builds ForwardBatch objects like the scheduler does.

    Requests are row indices of req_to_token; `seq_lens[row]` is how many tokens are cached."""

    def __init__(self, model: Optional[torch.nn.Module], num_layers: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, max_reqs: int = 8, max_context: int = 512,
                 pool_size: int = 4096, backend: str = "torch_native", device: str = "cpu", seed: int = 0):
        self.model = model
        self.device = device
        self.req_to_token_pool = ReqToTokenPool(max_reqs, max_context, device)
        self.allocator = TokenSlotAllocator(pool_size, device)
        self.kv_pool = KVPool(pool_size, dtype, num_kv_heads, head_dim, num_layers, device)
        runner = SimpleNamespace(device=device, req_to_token_pool=self.req_to_token_pool,
                                 kv_pool=self.kv_pool)
        self.backend = create_attention_backend(backend, runner)
        self.seq_lens: Dict[int, int] = {}
        self._gen = torch.Generator().manual_seed(seed)

    @classmethod
    def for_config(cls, model: torch.nn.Module, model_config, **kw) -> "KVHarness":
        return cls(model, model_config.num_hidden_layers, model_config.num_key_value_heads,
                   model_config.head_dim, model_config.dtype, **kw)

    def new_request(self) -> int:
        row = self.req_to_token_pool.alloc(1)[0]
        self.seq_lens[row] = 0
        return row

    def _alloc_slots(self, n: int) -> torch.Tensor:
        slots = self.allocator.alloc(n)
        assert slots is not None, "KV pool exhausted in test harness"
        # Scatter the slots so no request's KV is contiguous (as after evictions in real serving).
        return slots[torch.randperm(n, generator=self._gen)]

    def _common(self, mode: ForwardMode, rows: Sequence[int], chunks: Sequence[Sequence[int]]) -> dict:
        input_ids, positions = [], []
        out_loc = self._alloc_slots(sum(len(c) for c in chunks))
        offset = 0
        for row, chunk in zip(rows, chunks):
            start = self.seq_lens[row]
            slots = out_loc[offset : offset + len(chunk)]
            self.req_to_token_pool.write(row, start, start + len(chunk), slots)
            input_ids.extend(chunk)
            positions.extend(range(start, start + len(chunk)))
            offset += len(chunk)
        seq_lens = [self.seq_lens[r] + len(c) for r, c in zip(rows, chunks)]
        as_t = lambda xs: torch.tensor(xs, dtype=torch.int64, device=self.device)  # noqa: E731
        return dict(
            forward_mode=mode, batch_size=len(rows), input_ids=as_t(input_ids), positions=as_t(positions),
            req_pool_indices=as_t(list(rows)), seq_lens=as_t(seq_lens), out_cache_loc=out_loc.to(self.device),
            seq_lens_cpu=seq_lens, req_to_token_pool=self.req_to_token_pool, kv_pool=self.kv_pool,
            attn_backend=self.backend,
        )

    def commit(self, rows: Sequence[int], chunks: Sequence[Sequence[int]]) -> None:
        """Record that `chunks` are now cached for `rows` (after their forward ran)."""
        for row, chunk in zip(rows, chunks):
            self.seq_lens[row] += len(chunk)

    def _run(self, fb: ForwardBatch, rows: Sequence[int], chunks: Sequence[Sequence[int]]
             ) -> LogitsProcessorOutput:
        self.backend.init_forward_metadata(fb)
        with torch.inference_mode():
            out = self.model.forward(fb.input_ids, fb.positions, fb)
        self.commit(rows, chunks)
        return out

    def extend_batch(self, rows: Sequence[int], chunks: Sequence[Sequence[int]], return_logprob: bool = False,
                     logprob_starts: Optional[List[int]] = None, mode: ForwardMode = ForwardMode.EXTEND
                     ) -> ForwardBatch:
        """ForwardBatch for an extend pass (KV slots allocated and mapped; nothing run)."""
        kw = self._common(mode, rows, chunks)
        lens = [len(c) for c in chunks]
        prefix = [self.seq_lens[r] for r in rows]
        starts = [sum(lens[:i]) for i in range(len(lens))]
        as_t = lambda xs: torch.tensor(xs, dtype=torch.int64, device=self.device)  # noqa: E731
        return ForwardBatch(
            **kw, extend_seq_lens=as_t(lens), extend_prefix_lens=as_t(prefix), extend_start_loc=as_t(starts),
            extend_seq_lens_cpu=lens, extend_prefix_lens_cpu=prefix, return_logprob=return_logprob,
            extend_logprob_start_lens_cpu=logprob_starts if logprob_starts is not None else [0] * len(lens),
        )

    def decode_batch(self, rows: Sequence[int], tokens: Sequence[int]) -> ForwardBatch:
        return ForwardBatch(**self._common(ForwardMode.DECODE, rows, [[t] for t in tokens]))

    def extend(self, rows: Sequence[int], chunks: Sequence[Sequence[int]], return_logprob: bool = False,
               logprob_starts: Optional[List[int]] = None, mode: ForwardMode = ForwardMode.EXTEND
               ) -> LogitsProcessorOutput:
        fb = self.extend_batch(rows, chunks, return_logprob, logprob_starts, mode)
        return self._run(fb, rows, chunks)

    def decode(self, rows: Sequence[int], tokens: Sequence[int]) -> LogitsProcessorOutput:
        return self._run(self.decode_batch(rows, tokens), rows, [[t] for t in tokens])


# ---------------------------------------------------------------- transformers references


def hf_reference_model(path: str) -> torch.nn.Module:
    """transformers' model in float32 with eager attention: some transformers versions default
    Gemma2 to SDPA, which silently drops attention soft-capping."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


@torch.inference_mode()
def hf_prompt_logprobs(hf_model, ids: Sequence[int]) -> torch.Tensor:
    """[len(ids), vocab] log-softmax of HF's logits at every prompt position (one full forward)."""
    logits = hf_model(torch.tensor([list(ids)])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


@torch.inference_mode()
def hf_incremental_logprobs(hf_model, prompt: Sequence[int], new_tokens: Sequence[int]) -> torch.Tensor:
    """[len(new_tokens), vocab]: HF's log-softmax after feeding each new token one at a time on top
    of the cached prompt (what our decode steps compute)."""
    out = hf_model(torch.tensor([list(prompt)]), use_cache=True)
    past, rows = out.past_key_values, []
    for tok in new_tokens:
        out = hf_model(torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        rows.append(torch.log_softmax(out.logits[0, -1].float(), dim=-1))
    return torch.stack(rows)


def logprobs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1)
