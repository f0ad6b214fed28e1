"""Byte-level BPE tokenizers with family-specific special tokens and chat templates.

A tokenizer is a BPE model (trained here on the built-in corpus, or built programmatically by
`sglang.testing.shapes`) plus the conventions of one model family: which special tokens exist,
which of them is BOS/EOS/PAD, whether BOS is prepended, and the Jinja chat template. Special
tokens are appended after the BPE vocabulary, so they hold the highest ids (as in Llama 3 and
Qwen), which also exercises vocabulary-edge handling in the runtime.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from sglang.testing.corpus import training_corpus

DEFAULT_VOCAB_SIZE = 1000

_LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

_CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

# Mistral has no system role: the system prompt is folded into the first user turn.
# The prompt already ends with "[/INST]" after a user turn, so add_generation_prompt adds nothing.
_MISTRAL_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] %}{%- set turns = messages[1:] %}"
    "{%- else %}{%- set system = '' %}{%- set turns = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in turns %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.first and system %}"
    "{{- '[INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content'] + eos_token }}"
    "{%- else %}"
    "{{- raise_exception('mistral chat supports system (first), user and assistant roles only') }}"
    "{%- endif %}"
    "{%- endfor %}"
)

# Gemma 2 has no system role either; assistant turns are called "model".
_GEMMA2_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] + '\\n\\n' %}{%- set turns = messages[1:] %}"
    "{%- else %}{%- set system = '' %}{%- set turns = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in turns %}"
    "{%- if message['role'] not in ['user', 'assistant'] %}"
    "{{- raise_exception('gemma2 chat supports system (first), user and assistant roles only') }}"
    "{%- endif %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{- '<start_of_turn>' + role + '\\n' + (system if loop.first else '')"
    " + message['content'] + '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TokenizerFamily:
    """Special-token conventions of one model family."""

    name: str
    specials: tuple[str, ...]  # every special token, in id order (appended after BPE)
    bos: Optional[str]
    eos: str  # the tokenizer's eos_token (ends a chat turn)
    pad: str
    stop_tokens: tuple[str, ...]  # generation_config eos_token_id, in order
    add_bos: bool  # prepend BOS through the post-processor
    chat_template: str
    unk: Optional[str] = None
    qwen_pretokenizer: bool = False  # NFC + Qwen's split regex (see _apply_pipeline)


_LLAMA = TokenizerFamily(
    name="llama",
    specials=("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
              "<|end_header_id|>", "<|eot_id|>", "<|pad|>"),
    bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|pad|>",
    stop_tokens=("<|eot_id|>", "<|end_of_text|>"), add_bos=True, chat_template=_LLAMA3_TEMPLATE,
)
_QWEN = TokenizerFamily(
    name="qwen",
    specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
    bos=None, eos="<|im_end|>", pad="<|endoftext|>",
    stop_tokens=("<|im_end|>", "<|endoftext|>"), add_bos=False, chat_template=_CHATML_TEMPLATE,
    qwen_pretokenizer=True,
)
_MISTRAL = TokenizerFamily(
    name="mistral",
    specials=("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<pad>"),
    bos="<s>", eos="</s>", pad="<pad>", unk="<unk>",
    stop_tokens=("</s>",), add_bos=True, chat_template=_MISTRAL_TEMPLATE,
)
_GEMMA2 = TokenizerFamily(
    name="gemma2",
    specials=("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
    bos="<bos>", eos="<eos>", pad="<pad>", unk="<unk>",
    stop_tokens=("<end_of_turn>", "<eos>"), add_bos=True, chat_template=_GEMMA2_TEMPLATE,
)

FAMILIES: Mapping[str, TokenizerFamily] = MappingProxyType({
    "llama": _LLAMA, "mistral": _MISTRAL, "qwen2": _QWEN, "qwen3": _QWEN, "gemma2": _GEMMA2,
})


@dataclass(frozen=True)
class TokenizerIds:
    """Ids the model config and generation config need."""

    vocab_size: int
    bos_id: Optional[int]
    eos_id: int
    pad_id: int
    stop_ids: tuple[int, ...]


def tokenizer_family(arch: str) -> TokenizerFamily:
    """Return the special-token conventions for `arch` (llama, mistral, qwen2, qwen3, gemma2)."""
    try:
        return FAMILIES[arch]
    except KeyError:
        raise ValueError(
            f"unknown tokenizer family {arch!r}; choose one of {sorted(FAMILIES)}"
        ) from None


def _qwen_split_regex() -> Optional[str]:
    """The split pattern transformers' Qwen2Tokenizer hard-codes, read from the installed library."""
    try:
        from transformers.models.qwen2 import tokenization_qwen2
    except ImportError:
        return None
    return getattr(tokenization_qwen2, "PRETOKENIZE_REGEX", None)


def _apply_pipeline(tok: Tokenizer, family: Optional[TokenizerFamily]) -> Tokenizer:
    """Set normalizer, pre-tokenizer and decoder.

    transformers 5 ignores tokenizer.json's pipeline for model_type "qwen2" and rebuilds Qwen's
    own (NFC + regex split + byte-level). The qwen family uses that exact pipeline here, so
    tokenizer.json and AutoTokenizer always produce the same ids."""
    pattern = _qwen_split_regex() if family is not None and family.qwen_pretokenizer else None
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(vocab_size: int, family: Optional[TokenizerFamily] = None) -> Tokenizer:
    """Train a byte-level BPE with `vocab_size` entries on the built-in corpus (deterministic)."""
    tok = _apply_pipeline(Tokenizer(models.BPE()), family)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        # All 256 byte symbols, so any UTF-8 text encodes without an unknown token.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    return tok


def bpe_from_vocab(vocab: dict[str, int], merges: list[tuple[str, str]],
                   family: Optional[TokenizerFamily] = None) -> Tokenizer:
    """Wrap a programmatically built BPE (byte-level symbols) into a byte-level tokenizer."""
    return _apply_pipeline(Tokenizer(models.BPE(vocab=vocab, merges=merges)), family)


def _post_processor(tok: Tokenizer, family: TokenizerFamily) -> processors.PostProcessor:
    byte_level = processors.ByteLevel(trim_offsets=False)
    if not family.add_bos:
        return byte_level
    bos = family.bos
    template = processors.TemplateProcessing(
        single=f"{bos} $A",
        pair=f"{bos} $A {bos} $B:1",
        special_tokens=[(bos, tok.token_to_id(bos))],
    )
    return processors.Sequence([byte_level, template])


def add_family_tokens(tok: Tokenizer, family: TokenizerFamily) -> TokenizerIds:
    """Append the family's special tokens and post-processor; return the resulting ids."""
    tok.add_special_tokens(list(family.specials))
    tok.post_processor = _post_processor(tok, family)
    ids = {t: tok.token_to_id(t) for t in family.specials}
    return TokenizerIds(
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        bos_id=ids[family.bos] if family.bos else None,
        eos_id=ids[family.eos],
        pad_id=ids[family.pad],
        stop_ids=tuple(ids[t] for t in family.stop_tokens),
    )


def _tokenizer_config(family: TokenizerFamily, model_max_length: int) -> dict[str, Any]:
    extras = [t for t in family.specials if t not in (family.bos, family.eos, family.pad, family.unk)]
    return {
        # The generic fast class reads tokenizer.json as-is; family-specific classes in
        # transformers would rebuild pre-tokenizers and break our byte-level pipeline.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": family.bos,
        "eos_token": family.eos,
        "pad_token": family.pad,
        "unk_token": family.unk,
        "additional_special_tokens": extras,
        "add_bos_token": family.add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "chat_template": family.chat_template,
    }


def _special_tokens_map(family: TokenizerFamily) -> dict[str, Any]:
    names = {"bos_token": family.bos, "eos_token": family.eos,
             "pad_token": family.pad, "unk_token": family.unk}
    out: dict[str, Any] = {k: v for k, v in names.items() if v is not None}
    out["additional_special_tokens"] = [t for t in family.specials if t not in names.values()]
    return out


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write `data` as stable JSON (sorted keys) so identical inputs give identical bytes."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def save_tokenizer(
    tok: Tokenizer, family: TokenizerFamily, out_dir: str, model_max_length: int
) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json to `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"), pretty=False)
    write_json(os.path.join(out_dir, "tokenizer_config.json"),
                _tokenizer_config(family, model_max_length))
    write_json(os.path.join(out_dir, "special_tokens_map.json"), _special_tokens_map(family))


def write_tokenizer(
    arch: str, out_dir: str, vocab_size: int = DEFAULT_VOCAB_SIZE, model_max_length: int = 1024
) -> TokenizerIds:
    """Train the tiny tokenizer for `arch` (about `vocab_size` entries in all) into `out_dir`."""
    family = tokenizer_family(arch)
    if vocab_size < 256 + len(family.specials) + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small: byte-level BPE needs at least "
                         f"{256 + len(family.specials) + 1} entries (256 bytes + specials + 1 merge)")
    tok = train_bpe(vocab_size - len(family.specials), family)
    ids = add_family_tokens(tok, family)
    save_tokenizer(tok, family, out_dir, model_max_length)
    return ids
