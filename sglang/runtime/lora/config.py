"""LoRA serving options: parsing `--lora-paths` and checking the LoRA flags (no torch here, so
server_args can import it cheaply)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

# PEFT target names we can serve, mapped onto our fused modules (see lora/targets.py).
LORA_TARGET_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def parse_lora_paths(value: Any) -> Dict[str, str]:
    """`--lora-paths` entries -> {name: path}. An entry is 'name=path' or a bare path (named by
    its basename); Engine callers may also pass a dict {name: path}."""
    if value is None:
        return {}
    if isinstance(value, dict):
        items = [(str(k), str(v)) for k, v in value.items()]
    else:
        entries = [value] if isinstance(value, str) else list(value)
        items = []
        for entry in entries:
            if not isinstance(entry, str) or not entry:
                raise ValueError(f"--lora-paths entries must be 'name=path' or a path, got {entry!r}")
            name, sep, path = entry.partition("=")
            if not sep:
                path = entry
                name = os.path.basename(os.path.normpath(entry))
            items.append((name, path))
    out: Dict[str, str] = {}
    for name, path in items:
        check_adapter_name(name)
        if name in out:
            raise ValueError(f"--lora-paths names adapter {name!r} twice; give each adapter its own name")
        out[name] = path
    return out


def check_adapter_name(name: Any) -> None:
    if not isinstance(name, str) or not name or ":" in name or "=" in name:
        raise ValueError(f"a LoRA adapter name must be a non-empty string without ':' or '=', got {name!r}")


def parse_target_modules(value: Optional[List[str]]) -> tuple:
    """`--lora-target-modules` -> the PEFT target names served (default / 'all': every one)."""
    if not value or list(value) == ["all"]:
        return LORA_TARGET_NAMES
    bad = [v for v in value if v not in LORA_TARGET_NAMES]
    if bad:
        raise ValueError(f"--lora-target-modules: unknown module(s) {bad}; choose from {list(LORA_TARGET_NAMES)} "
                         f"or 'all'")
    return tuple(v for v in LORA_TARGET_NAMES if v in value)


def validate_lora_args(args: Any) -> None:
    """Checks the LoRA flags of a ServerArgs (and turns --enable-lora on when --lora-paths is given)."""
    paths = parse_lora_paths(args.lora_paths)
    if paths:
        args.enable_lora = True
    parse_target_modules(args.lora_target_modules)
    if args.max_loras_per_batch < 1:
        raise ValueError(f"--max-loras-per-batch must be >= 1, got {args.max_loras_per_batch}")
    if args.max_lora_rank is not None and args.max_lora_rank < 1:
        raise ValueError(f"--max-lora-rank must be >= 1, got {args.max_lora_rank}")
    if not args.enable_lora:
        return
    if args.tp_size > 1:
        raise ValueError("LoRA serving with --tp-size > 1 is not supported yet; drop one of them")
    # NGRAM verifies with the target model alone, each row under its request's adapter; a draft
    # model would draft without the adapters (and would need its own adapter pool).
    if args.speculative_algorithm and str(args.speculative_algorithm).upper() != "NGRAM":
        raise ValueError(f"LoRA serving with --speculative-algorithm {args.speculative_algorithm} is not supported "
                         "yet (NGRAM is); drop one of them or use NGRAM")
    if getattr(args, "is_embedding", False):
        raise ValueError("LoRA serving is for generation models; drop --is-embedding or --enable-lora")
