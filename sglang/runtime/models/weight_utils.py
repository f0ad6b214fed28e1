"""Reading checkpoint tensors and routing them into model parameters.

- `find_weight_files` picks the files of a checkpoint directory (honouring the shard index).
- `iterate_weights` streams (name, tensor) pairs one file at a time with a progress bar, so a
  large checkpoint is never fully resident in host memory. With `lazy=True`, safetensors entries
  come as `LazyWeight` views that read nothing until a weight loader takes its slice (a
  tensor-parallel rank reads only its shard of each parallel layer's weight).
- `load_named_weights` is the shared body of every model's `load_weights`: it maps checkpoint
  names onto (possibly fused) parameters, calls their `weight_loader`, and reports tensors the
  checkpoint never provided.
- `init_dummy_weights` fills parameters with seeded random values for `--load-format dummy`.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm

from sglang.runtime.distributed.lazy_weight import LazyWeight, materialize
from sglang.runtime.layers.linear import ShardId, copy_checked

logger = logging.getLogger(__name__)

SAFETENSORS_INDEX = "model.safetensors.index.json"
PT_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FORMATS = ("auto", "safetensors", "pt")

# (fused parameter name part, checkpoint name part, shard id)
StackedMapping = Sequence[Tuple[str, str, ShardId]]
WeightIter = Iterable[Tuple[str, torch.Tensor]]


# ---------------------------------------------------------------- locating files


def _files_from_index(model_path: str, index_name: str) -> Optional[List[str]]:
    index_path = os.path.join(model_path, index_name)
    if not os.path.isfile(index_path):
        return None
    with open(index_path, encoding="utf-8") as f:
        weight_map: Dict[str, str] = json.load(f)["weight_map"]
    files = [os.path.join(model_path, name) for name in sorted(set(weight_map.values()))]
    missing = [p for p in files if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{index_name} lists shard(s) that do not exist: {missing}")
    return files


def _find_format_files(model_path: str, kind: str) -> List[str]:
    index, pattern = (SAFETENSORS_INDEX, "*.safetensors") if kind == "safetensors" else (PT_INDEX, "*.bin")
    files = _files_from_index(model_path, index)
    if files is not None:
        return files
    files = sorted(glob.glob(os.path.join(model_path, pattern)))
    if kind == "pt":  # training leftovers share the extension but hold no weights
        files = [f for f in files if not os.path.basename(f).startswith(("training_args", "optimizer"))]
    return files


def find_weight_files(model_path: str, load_format: str = "auto") -> Tuple[List[str], str]:
    """(files, kind) where kind is 'safetensors' or 'pt'. 'auto' prefers safetensors."""
    if load_format not in WEIGHT_FORMATS:
        raise ValueError(f"load_format {load_format!r} does not read files; use one of {WEIGHT_FORMATS}")
    kinds = ("safetensors", "pt") if load_format == "auto" else (load_format,)
    for kind in kinds:
        files = _find_format_files(model_path, kind)
        if files:
            return files, kind
    present = sorted(os.listdir(model_path)) if os.path.isdir(model_path) else "directory does not exist"
    raise FileNotFoundError(
        f"no {' or '.join(kinds)} weights found in {model_path} (contents: {present}); "
        f"pass --load-format dummy to run with random weights"
    )


# ---------------------------------------------------------------- streaming tensors


def _read_entry(f, name: str, lazy: bool):
    if not lazy:
        return f.get_tensor(name)
    handle = f.get_slice(name)  # holds the file open for as long as the view lives
    return LazyWeight.from_safetensors(handle) if handle.get_shape() else f.get_tensor(name)


def _safetensors_iter(files: Sequence[str], progress: bool, lazy: bool = False
                      ) -> Iterator[Tuple[str, torch.Tensor]]:
    from safetensors import safe_open

    total = 0
    for path in files:  # headers only: cheap, gives the progress bar a total
        with safe_open(path, framework="pt", device="cpu") as f:
            total += len(list(f.keys()))
    with tqdm(total=total, desc="Loading weights", unit="tensor", disable=not progress) as bar:
        for path in files:
            with safe_open(path, framework="pt", device="cpu") as f:
                for name in f.keys():
                    yield name, _read_entry(f, name, lazy)
                    bar.update(1)


def _pt_iter(files: Sequence[str], progress: bool) -> Iterator[Tuple[str, torch.Tensor]]:
    for path in tqdm(files, desc="Loading weights", unit="shard", disable=not progress):
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        yield from state.items()
        del state


def iterate_weights(files: Sequence[str], kind: str, progress: bool = True, lazy: bool = False
                    ) -> Iterator[Tuple[str, torch.Tensor]]:
    """(name, tensor) pairs; with `lazy`, safetensors entries are `LazyWeight` views (route them
    through `load_named_weights`, which reads only what each parameter's loader needs)."""
    if kind == "safetensors":
        return _safetensors_iter(files, progress, lazy)
    if kind == "pt":
        return _pt_iter(files, progress)
    raise ValueError(f"unknown weight file kind {kind!r}")


# ---------------------------------------------------------------- routing into parameters


def default_weight_loader(param: nn.Parameter, loaded: torch.Tensor, shard_id: ShardId = None) -> None:
    copy_checked(param.data, loaded)


def _expected_entries(params: Dict[str, nn.Parameter], stacked: StackedMapping
                      ) -> Dict[Tuple[str, ShardId], str]:
    """(param name, shard id) -> checkpoint tensor name, for every tensor the model needs."""
    expected: Dict[Tuple[str, ShardId], str] = {}
    for name in params:
        shards = [(p, w, s) for p, w, s in stacked if p in name]
        for param_part, weight_part, shard in shards:
            expected[(name, shard)] = name.replace(param_part, weight_part)
        if not shards:
            expected[(name, None)] = name
    return expected


def route_name(name: str, params: Dict[str, nn.Parameter], stacked: StackedMapping
           ) -> Optional[Tuple[str, ShardId]]:
    """(parameter name, shard id) a checkpoint tensor named `name` loads into, or None."""
    for param_part, weight_part, shard in stacked:
        if weight_part in name:
            fused = name.replace(weight_part, param_part)
            if fused in params:
                return fused, shard
    return (name, None) if name in params else None


def load_named_weights(model: nn.Module, weights: WeightIter, stacked: StackedMapping = (),
                       skip: Callable[[str], bool] = lambda name: False) -> None:
    """Copy checkpoint tensors into `model`'s parameters.

    Raises naming the tensor on a shape mismatch, and listing every tensor the checkpoint never
    provided. Checkpoint tensors the model has no use for are reported in a warning."""
    params = dict(model.named_parameters())
    loaded: Set[Tuple[str, ShardId]] = set()
    unused: List[str] = []
    for name, tensor in weights:
        if skip(name):
            continue
        target = route_name(name, params, stacked)
        if target is None:
            unused.append(name)
            continue
        param = params[target[0]]
        loader = getattr(param, "weight_loader", default_weight_loader)
        if not getattr(loader, "reads_slices", False):
            tensor = materialize(tensor)
        try:
            loader(param, tensor, target[1])
        except ValueError as e:
            raise ValueError(f"cannot load checkpoint tensor {name!r}: {e}") from e
        loaded.add(target)
    if unused:
        logger.warning("checkpoint tensors not used by the model (%d): %s", len(unused), unused[:10])
    expected = _expected_entries(params, stacked)
    missing = sorted(ckpt for key, ckpt in expected.items() if key not in loaded)
    if missing:
        shown = ", ".join(missing[:20]) + (f" ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise ValueError(
            f"checkpoint is missing {len(missing)} tensor(s) the model needs: {shown}. Check that all "
            f"shards are present and that config.json matches the weights."
        )


# ---------------------------------------------------------------- dummy weights


@torch.no_grad()
def init_dummy_weights(model: nn.Module, seed: int = 0) -> None:
    """Seeded random weights at the real shapes, scaled so activations and logits stay O(1).

    Matrices get U(-1/sqrt(fan_in), 1/sqrt(fan_in)); norm weights are set to their identity value
    (random norm scales would only add noise); other vectors (biases) get U(-1e-3, 1e-3)."""
    norm_params = {id(m.weight): float(m.identity_weight) for m in model.modules()
                   if hasattr(m, "identity_weight")}
    generators: Dict[torch.device, torch.Generator] = {}
    for _, param in model.named_parameters():
        if id(param) in norm_params:
            param.fill_(norm_params[id(param)])
            continue
        gen = generators.setdefault(param.device, torch.Generator(device=param.device).manual_seed(seed))
        bound = param.shape[-1] ** -0.5 if param.dim() >= 2 else 1e-3
        noise = torch.rand(param.shape, generator=gen, device=param.device, dtype=torch.float32)
        param.copy_((noise * 2 - 1) * bound)
