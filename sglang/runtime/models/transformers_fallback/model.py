"""TransformersForCausalLM: a transformers causal LM behind the interface our model runner calls.

The batch's tokens run as one row ([1, num_tokens]) with our per-token positions as position_ids;
every attention call goes through `attention_bridge.paged_attention`, so the paged KV cache, radix
prefix reuse, chunked prefill and ragged decode batches work as for our own models. Logits come
from the model's output embedding through our LogitsProcessor (prompt log-probs, last rows)."""

from __future__ import annotations

import copy
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.distributed.lazy_weight import materialize
from sglang.runtime.distributed.tensor_parallel import SINGLE_RANK
from sglang.runtime.layers.attention.radix_attention import RadixAttention
from sglang.runtime.layers.logits_processor import LogitsProcessor, LogitsProcessorOutput
from sglang.runtime.model_executor.forward_batch import ForwardBatch
from sglang.runtime.models.transformers_fallback.attention_bridge import BATCH_KWARG, BridgeCall, register_attention
from sglang.runtime.models.transformers_fallback.select import transformers_class


class _OutputHead:
    """LogitsProcessor's view of transformers' output projection (single rank, its own bias)."""

    def __init__(self, head: nn.Module):
        self.head = head
        self.weight = head.weight
        self.bias = getattr(head, "bias", None)
        self.tp = SINGLE_RANK

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden)


def _radix_layers(config: PretrainedConfig) -> nn.ModuleList:
    """One RadixAttention per layer, shaped as ModelConfig sized the KV pool."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return nn.ModuleList(RadixAttention(heads, head_dim, head_dim**-0.5, kv_heads, i)
                         for i in range(config.num_hidden_layers))


class TransformersBackbone(nn.Module):
    """transformers' model up to its final hidden states, called as our backbones are
    (`EmbeddingModel` pools it under --is-embedding)."""

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        config = copy.deepcopy(config)  # transformers records the attention implementation on it
        cls = transformers_class(config.architectures[0])
        self.hf_model = cls._from_config(config, attn_implementation=register_attention(),
                                         dtype=torch.get_default_dtype())
        self.hf_model.eval()
        self.attn_layers = _radix_layers(config)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[num_tokens, hidden]: the batch runs as one row with our per-token positions."""
        if input_embeds is not None:
            raise ValueError("the transformers fallback serves text-only models (no input_embeds)")
        out = self.hf_model.base_model(input_ids=input_ids[None], position_ids=positions[None], use_cache=False,
                                       **{BATCH_KWARG: BridgeCall(forward_batch, self.attn_layers)})
        return out[0][0]


class TransformersForCausalLM(nn.Module):
    # transformers' forward has host syncs (padding checks, mask logic) a graph capture rejects.
    supports_cuda_graph = False

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.model = TransformersBackbone(config)
        self.head = _OutputHead(self.hf_model.get_output_embeddings())
        self.logits_processor = LogitsProcessor(config.vocab_size, getattr(config, "final_logit_softcapping", None))

    @property
    def hf_model(self) -> nn.Module:
        return self.model.hf_model

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, forward_batch: ForwardBatch,
                input_embeds: Optional[torch.Tensor] = None) -> LogitsProcessorOutput:
        hidden = self.model(input_ids, positions, forward_batch, input_embeds=input_embeds)
        return self.logits_processor(hidden, self.head, forward_batch)

    # ------------------------------------------------------------------ weights
    def _target_name(self, name: str, state: Dict[str, torch.Tensor]) -> Optional[str]:
        """The state-dict entry a checkpoint tensor fills: the same name, or with the base-model
        prefix some older checkpoints (GPT-2's) were saved without."""
        if name in state:
            return name
        prefixed = f"{self.hf_model.base_model_prefix}.{name}"
        return prefixed if prefixed in state else None

    def load_weights(self, weights: Iterable[Tuple[str, torch.Tensor]]) -> None:
        state = self.hf_model.state_dict()  # tensors share storage with the parameters
        loaded, unknown = set(), []
        for name, tensor in weights:
            target = self._target_name(name, state)
            if target is None:
                unknown.append(name)
                continue
            if tuple(state[target].shape) != tuple(tensor.shape):
                raise ValueError(f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, the "
                                 f"transformers model expects {tuple(state[target].shape)}")
            state[target].copy_(materialize(tensor))
            loaded.add(state[target].data_ptr())
        self._check_complete(loaded, unknown)

    def _check_complete(self, loaded: set, unknown: List[str]) -> None:
        # Tied parameters (lm_head = embedding) are one tensor: loading either fills both.
        missing = [n for n, p in self.hf_model.named_parameters() if p.data_ptr() not in loaded]
        if missing:
            extra = f"; the checkpoint's unmatched tensors: {unknown[:8]}" if unknown else ""
            raise ValueError(f"the checkpoint lacks {len(missing)} parameter(s) of transformers' "
                             f"{type(self.hf_model).__name__}, e.g. {missing[:8]}{extra}")
