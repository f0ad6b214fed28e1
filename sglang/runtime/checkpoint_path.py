"""Where the checkpoint lives: `--model-path` as a local directory, a GGUF file, or a Hugging Face
repo id.

This runs in the launching process before any child is spawned or torch is imported, so a wrong
path fails in about a second with one line saying what is missing. A repo id ('org/name')
resolves through the Hugging Face cache (HF_HOME / HF_HUB_CACHE): online, missing files are
downloaded into it; with HF_HUB_OFFLINE=1 only the cached snapshot is used. Afterwards the
runtime reads the local snapshot directory only.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, List, Optional

from sglang.runtime.models.gguf.files import (
    GGUFPathError,
    check_gguf_header,
    has_gguf_suffix,
    is_gguf_file,
    resolve_gguf_file,
)

# The Hub's repo-id rule: 'namespace/name', letters, digits, '-', '_', '.', at most 96 each.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
# Files of a repo the runtime reads besides the weights: configs, tokenizers, chat templates,
# remote code (--trust-remote-code).
_SIDE_SUFFIXES = (".json", ".model", ".tiktoken", ".txt", ".jinja", ".py")
_SHOWN_ENTRIES = 6


class ModelPathError(ValueError):
    """--model-path (or --tokenizer-path) does not name a usable checkpoint; the message says why."""


def looks_like_repo_id(path: str) -> bool:
    return bool(_REPO_ID.match(path)) and ".." not in path and "--" not in path


def resolve_checkpoint_dir(path: str, revision: Optional[str] = None, load_format: str = "auto",
                           flag: str = "--model-path") -> str:
    """The local directory holding the checkpoint `path` names, or the GGUF file it names (a .gguf
    file, or a directory's only one with --load-format gguf); raises ModelPathError."""
    try:
        gguf_file = resolve_gguf_file(path, load_format)
    except GGUFPathError as exc:
        raise ModelPathError(f"{flag} {exc}") from None
    if gguf_file is not None:
        return gguf_file
    if os.path.isdir(path):
        check_checkpoint_dir(path, flag)
        return path
    if os.path.exists(path):
        raise ModelPathError(f"{flag} {path!r} is a file; give the checkpoint's directory or a .gguf file")
    if not looks_like_repo_id(path):
        raise ModelPathError(f"{flag} {path!r}: no such directory")
    local = _from_hub(path, revision, flag, load_format)
    check_checkpoint_dir(local, flag, origin=path)
    return local


def resolve_tokenizer_dir(path: str, revision: Optional[str] = None, flag: str = "--tokenizer-path") -> str:
    """Like resolve_checkpoint_dir for a tokenizer: no config.json or weights needed (a GGUF file
    carries its tokenizer)."""
    if is_gguf_file(path):
        try:
            check_gguf_header(path)
        except GGUFPathError as exc:
            raise ModelPathError(f"{flag} {exc}") from None
        return path
    if os.path.isdir(path):
        if not os.listdir(path):
            raise ModelPathError(f"{flag} {path!r} is an empty directory; expected tokenizer files")
        return path
    if not looks_like_repo_id(path):
        raise ModelPathError(f"{flag} {path!r}: no such directory")
    return _from_hub(path, revision, flag, load_format=None)


def check_checkpoint_dir(path: str, flag: str = "--model-path", origin: Optional[str] = None) -> None:
    where = f"{flag} {origin!r} (snapshot {path})" if origin else f"{flag} {path!r}"
    if not os.path.isdir(path):
        raise ModelPathError(f"{where}: no such directory")
    entries = sorted(os.listdir(path))
    if not entries:
        raise ModelPathError(f"{where} is an empty directory; expected a Hugging Face checkpoint "
                             f"(config.json, weights, tokenizer files)")
    ggufs = [e for e in entries if has_gguf_suffix(e)]
    if "config.json" not in entries and ggufs:
        raise ModelPathError(f"{where} has no config.json but holds GGUF file(s): {_summary(ggufs)}; pass the "
                             f".gguf file itself as {flag} (or add --load-format gguf if the directory holds one)")
    if "config.json" not in entries:
        raise ModelPathError(f"{where} has no config.json (it holds: {_summary(entries)}); "
                             f"point it at the checkpoint's own directory")


def use_local_checkpoint(server_args, model_dir: Optional[str] = None) -> None:
    """Replace `server_args.model_path` / `tokenizer_path` by the local directories they name
    (`model_dir`: model_path already resolved). Idempotent; served_model_name keeps what the
    user gave (e.g. the repo id)."""
    same = server_args.tokenizer_path == server_args.model_path
    if model_dir is None:
        model_dir = resolve_checkpoint_dir(server_args.model_path, server_args.revision, server_args.load_format)
    if same:
        tokenizer_dir = model_dir
    elif server_args.skip_tokenizer_init:
        tokenizer_dir = server_args.tokenizer_path
    else:
        tokenizer_dir = resolve_tokenizer_dir(server_args.tokenizer_path, server_args.revision)
    server_args.model_path, server_args.tokenizer_path = model_dir, tokenizer_dir


# ---------------------------------------------------------------- Hugging Face Hub
def _from_hub(repo_id: str, revision: Optional[str], flag: str, load_format: Optional[str]) -> str:
    from huggingface_hub import constants, snapshot_download

    not_local = f"{flag} {repo_id!r} is not a local directory"
    if constants.HF_HUB_OFFLINE:
        try:
            return snapshot_download(repo_id, revision=revision, local_files_only=True)
        except Exception:
            raise ModelPathError(f"{not_local}, and the Hugging Face cache ({constants.HF_HUB_CACHE}) has no "
                                 f"snapshot of that repo{_at(revision)}; HF_HUB_OFFLINE=1 forbids downloading "
                                 f"it") from None
    try:
        files = _repo_files(repo_id, revision)
        if load_format is not None and "config.json" not in files:
            raise ModelPathError(f"{flag} {repo_id!r}: the Hugging Face repo{_at(revision)} has no config.json "
                                 f"(it holds: {_summary(sorted(files))})")
        return snapshot_download(repo_id, revision=revision, allow_patterns=_wanted_files(files, load_format))
    except ModelPathError:
        raise
    except Exception as online_error:
        try:  # the Hub unreachable but the snapshot cached: use it, as transformers does
            return snapshot_download(repo_id, revision=revision, local_files_only=True)
        except Exception:
            raise ModelPathError(f"{not_local}, and it could not be fetched from the Hugging Face Hub{_at(revision)} "
                                 f"({_one_line(online_error)})") from None


def _repo_files(repo_id: str, revision: Optional[str]) -> List[str]:
    from huggingface_hub import HfApi

    # model_info makes one request (the tree listing retries for ~20 s when the Hub is unreachable).
    info = HfApi().model_info(repo_id, revision=revision)
    return [s.rfilename for s in info.siblings or []]


def _wanted_files(files: Iterable[str], load_format: Optional[str]) -> List[str]:
    """Top-level files the runtime reads: side files, plus one weight format (safetensors when
    the repo has it, unless --load-format says otherwise; none for 'dummy' or a tokenizer)."""
    top = [f for f in files if "/" not in f]
    wanted = [f for f in top if f.endswith(_SIDE_SUFFIXES)]
    if load_format in (None, "dummy"):
        return wanted
    has_safetensors = any(f.endswith(".safetensors") for f in top)
    use_safetensors = load_format == "safetensors" or (load_format == "auto" and has_safetensors)
    suffixes = (".safetensors",) if use_safetensors else (".bin", ".pt")
    return wanted + [f for f in top if f.endswith(suffixes)]


def _at(revision: Optional[str]) -> str:
    return f" at revision {revision!r}" if revision else ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _summary(entries: List[str]) -> str:
    shown = ", ".join(entries[:_SHOWN_ENTRIES])
    return shown + (f", ... ({len(entries)} entries)" if len(entries) > _SHOWN_ENTRIES else "")
