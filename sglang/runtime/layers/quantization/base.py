"""The interfaces a quantization method implements (see the package docstring)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Optional

import torch
from torch import nn

if TYPE_CHECKING:
    from sglang.runtime.models.model_config import ModelConfig


class LinearMethod(ABC):
    """How a linear layer holds its weight and computes y = x W^T + b."""

    @abstractmethod
    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        """Set `layer.weight` (a Parameter whose `weight_loader` takes checkpoint tensors)."""

    @abstractmethod
    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """x [tokens, in] -> [tokens, out] in x's dtype."""

    def process_weights_after_loading(self, layer: nn.Module) -> None:
        """Repack or quantize what was loaded (called once, after every weight is in)."""


class EmbeddingMethod(ABC):
    """How a vocabulary table holds its rows, looks them up, and (as an LM head) projects onto them."""

    @abstractmethod
    def create_weights(self, layer: nn.Module, params_dtype: torch.dtype) -> None:
        """Set `layer.weight` (a Parameter whose `weight_loader` takes checkpoint tensors)."""

    @abstractmethod
    def embedding(self, layer: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Rows at `ids`, in the layer's dtype."""

    @abstractmethod
    def apply(self, layer: nn.Module, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """Logits x [tokens, hidden] -> [tokens, rows], in x's dtype."""


class QuantizationConfig(ABC):
    """One `--quantization` choice: given the built model (before its weights load), it installs
    its methods on the layers it can serve."""

    name: str

    @classmethod
    def from_checkpoint(cls, quantization_config: Dict[str, Any]) -> "QuantizationConfig":
        """The config a checkpoint's config.json `quantization_config` describes."""
        raise ValueError(f"--quantization {cls.name} does not read a checkpoint's quantization_config "
                         f"(its quant_method is {quantization_config.get('quant_method')!r})")

    @abstractmethod
    def prepare(self, model: nn.Module, model_config: "ModelConfig", device: str) -> None:
        """Swap layer methods; raise ValueError naming the problem for an unusable setup."""

    def finish(self, model: nn.Module) -> None:
        """After the weights load: let every layer's method repack what it loaded."""
        for module in model.modules():
            method = getattr(module, "quant_method", None)
            if isinstance(method, LinearMethod):
                method.process_weights_after_loading(module)

    def checkpoint_tensors_kept(self) -> FrozenSet[str]:
        """Checkpoint tensors the loader must hand over as stored (not dequantized or cast)."""
        return frozenset()
