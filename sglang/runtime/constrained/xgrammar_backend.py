"""The "xgrammar" grammar backend (default): JSON schema, EBNF, regex through xgrammar.

The vocabulary is handed to xgrammar as raw bytes from `token_bytes_table`, the same table our
FSM uses, with special tokens as empty strings (xgrammar then never allows them as text;
`TokenizerInfo.from_huggingface` would treat e.g. "<|begin_of_text|>" as literal text).

JSON whitespace: without a whitespace pattern, xgrammar's compact layout (separators ", " and
": ", no other whitespace) keeps outputs short and gives long jump-forward strings; with one,
xgrammar allows any JSON whitespace (it cannot take a regex for it).

Limits: xgrammar keeps repetitions compact when compiling, but its jump-forward builds the whole
forced string in one native call, with no length argument. So every grammar is measured first on
xgrammar's own EBNF print of it (ebnf_measure): an empty language, or one that can force more than
MAX_FORCED_CHARS, is refused; a grammar that could not be measured never jumps forward; and a
recursive grammar stops jumping once its open recursion could force more than
MAX_NATIVE_JUMP_CHARS. The forced string is then cut to the caller's chunk.
"""

from __future__ import annotations

import json
import logging
from typing import Any, List, Optional, Tuple, Union

import torch
import xgrammar as xgr

from sglang.runtime.constrained.base_grammar import BaseGrammarBackend, BaseGrammarObject, eos_only_mask
from sglang.runtime.constrained.batch_mask import unpack_bitmask
from sglang.runtime.constrained.ebnf_measure import EBNFMeasureError, GrammarMeasure, measure_ebnf
from sglang.runtime.constrained.grammar_limits import (
    JUMP_CHUNK_CHARS,
    MAX_FORCED_CHARS,
    MAX_NATIVE_JUMP_CHARS,
    check_schema_counts,
    empty_language_error,
    forced_text_error,
)
from sglang.runtime.constrained.json_schema_regex import load_schema
from sglang.runtime.constrained.string_formats import with_format_patterns

logger = logging.getLogger(__name__)

# How xgrammar prints the character classes of JSON strings (length-bounded, and its generic
# string), and our fix of them: no raw control characters, no UTF-16 surrogate code points.
_SURROGATES = r"\ud800-\udfff"
STRING_CHAR_FIXES = ((r'[^\"\\\r\n]', r'[^\"\\\0-\x1f' + _SURROGATES + "]"),
                     (r'[^\0-\x1f\"\\\r\n]', r'[^\0-\x1f\"\\\r\n' + _SURROGATES + "]"))


class XGrammarBatchFiller:
    """Fills the bitmask rows of many matchers in one call on xgrammar's own thread pool (the
    GIL is released), so a batch of 32 JSON masks costs about one mask's time per core."""

    def __init__(self, max_threads: Union[int, str] = "auto"):
        self._batch = xgr.BatchGrammarMatcher(max_threads)

    def fill_rows(self, grammars: List["XGrammarGrammar"], bitmask: torch.Tensor, rows: List[int]) -> None:
        live = []
        for grammar, row in zip(grammars, rows):
            if grammar.matcher.is_terminated():
                grammar.fill_bitmask_row(bitmask, row)
            else:
                live.append((grammar, row))
        if live:
            self._batch.batch_fill_next_token_bitmask([g.matcher for g, _ in live], bitmask,
                                                      [row for _, row in live])


class XGrammarGrammar(BaseGrammarObject):
    def __init__(self, compiled: Any, vocab_size: int, eos_ids: torch.Tensor,
                 batch_filler: Optional[XGrammarBatchFiller] = None, measure: Optional[GrammarMeasure] = None,
                 token_lengths: Optional[List[int]] = None):
        self._compiled = compiled
        self.batch_filler = batch_filler  # shared by every grammar of one backend
        self._vocab_size = vocab_size
        self._eos_ids = eos_ids
        self._eos_set = set(eos_ids.tolist())
        self.matcher = xgr.GrammarMatcher(compiled, override_stop_tokens=eos_ids.tolist() or None)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._only_eos_cache: Optional[bool] = None  # per state; reset on every change
        self._measure = measure  # None: forced length unknown, so never jump forward
        self._token_lengths = token_lengths or []  # bytes per token id (shared, read-only)
        self._accepted_lengths: List[int] = []  # bytes of each accepted token; its length bounds rollback
        self._accepted_bytes = 0  # their sum: bounds the recursion depth (see _native_jump_is_bounded)

    @property
    def _num_accepted(self) -> int:
        return len(self._accepted_lengths)

    def accept_token(self, token_id: int) -> bool:
        if not 0 <= token_id < self._vocab_size or self.matcher.is_terminated():
            return False
        ok = self.matcher.accept_token(token_id)
        if ok:
            self._only_eos_cache = None
            length = self._token_lengths[token_id] if token_id < len(self._token_lengths) else 1
            self._accepted_lengths.append(length)
            self._accepted_bytes += length
        return ok

    def is_terminated(self) -> bool:
        if self.matcher.is_terminated():
            return True
        if not self.matcher.is_completed():
            return False
        if self._only_eos_cache is None:
            self._only_eos_cache = self._only_eos_allowed()
        return self._only_eos_cache

    def _only_eos_allowed(self) -> bool:
        self.matcher.fill_next_token_bitmask(self._bitmask)
        allowed = unpack_bitmask(self._bitmask[0], self._vocab_size).nonzero().flatten().tolist()
        return all(tid in self._eos_set for tid in allowed)

    def fill_allowed_mask(self, mask_row: torch.Tensor) -> None:
        if self.matcher.is_terminated():
            eos_only_mask(mask_row, self._eos_ids)
            return
        self.matcher.fill_next_token_bitmask(self._bitmask)
        mask_row.copy_(unpack_bitmask(self._bitmask[0], self._vocab_size))

    def fill_bitmask_row(self, bitmask: torch.Tensor, row: int) -> None:
        """Batch fast path: write this request's packed mask into row `row` of an xgrammar bitmask."""
        if self.matcher.is_terminated():
            bitmask[row].zero_()
            for tid in self._eos_set:
                bitmask[row, tid // 32] |= _bit(tid % 32)
            return
        self.matcher.fill_next_token_bitmask(bitmask, row)

    def try_jump_forward(self, max_chars: int = JUMP_CHUNK_CHARS) -> Optional[str]:
        if max_chars <= 0 or self.matcher.is_terminated() or not self._native_jump_is_bounded():
            return None
        try:
            forced = self.matcher.find_jump_forward_string()
        except UnicodeDecodeError:
            # The forced bytes stop inside a multi-byte character: nothing safe to jump yet.
            return None
        return forced[:max_chars] or None  # any prefix of forced text is forced

    def _native_jump_is_bounded(self) -> bool:
        """Whether xgrammar's forced string, built whole, stays under MAX_NATIVE_JUMP_CHARS.
        Each open recursion level (at most one per byte accepted so far) may add
        `recursive_forced` characters of closing text to the grammar's static bound."""
        measure = self._measure
        if measure is None:
            return False
        depth = self._accepted_bytes + 1 if measure.recursive_forced else 0
        return measure.forced + depth * measure.recursive_forced <= MAX_NATIVE_JUMP_CHARS

    def rollback(self, num_tokens: int) -> None:
        if not 0 <= num_tokens <= self._num_accepted:
            raise ValueError(f"cannot roll back {num_tokens} tokens: only {self._num_accepted} were accepted")
        if num_tokens:
            self.matcher.rollback(num_tokens)
            self._only_eos_cache = None
            self._accepted_bytes -= sum(self._accepted_lengths[-num_tokens:])
            del self._accepted_lengths[-num_tokens:]

    def copy(self) -> "XGrammarGrammar":
        return XGrammarGrammar(self._compiled, self._vocab_size, self._eos_ids, self.batch_filler,
                               self._measure, self._token_lengths)


def _bit(position: int) -> int:
    """int32 value with one bit set (bit 31 is the sign bit)."""
    return -(1 << 31) if position == 31 else 1 << position


class XGrammarBackend(BaseGrammarBackend):
    """Options: eos_token_ids, whitespace_pattern (None: compact JSON), max_threads (compiler),
    mask_threads (batch mask filling; "auto" is half the host's cores)."""

    name = "xgrammar"

    def __init__(self, tokenizer: Any, vocab_size: int, **options: Any):
        super().__init__(tokenizer, vocab_size, **options)
        vocab = [b or b"" for b in self.vocab_bytes()]
        self._token_lengths = [len(b) for b in vocab]
        info = xgr.TokenizerInfo(
            vocab, xgr.VocabType.RAW, vocab_size=vocab_size, stop_token_ids=self.eos_token_ids or None
        )
        self._compiler = xgr.GrammarCompiler(info, max_threads=int(self.options.get("max_threads", 2)))
        self._any_whitespace = self.options.get("whitespace_pattern") is not None
        self._eos_ids = torch.tensor(self.eos_token_ids, dtype=torch.int64)
        self._filler = XGrammarBatchFiller(self.options.get("mask_threads", "auto"))

    def _compile(self, kind: str, spec: str) -> XGrammarGrammar:
        try:
            grammar, ebnf = self._parse(kind, spec)
            measure = _checked_measure(kind, ebnf)  # refuses before xgrammar compiles anything
            compiled = self._compiler.compile_grammar(grammar)
        except UnicodeDecodeError as exc:
            # xgrammar's message quotes the offending character cut to its first byte, so the
            # message itself fails to decode; its bytes still say what is wrong.
            message = exc.object.decode("utf-8", "replace") if isinstance(exc.object, bytes) else str(exc)
            raise ValueError(f"invalid {kind} grammar: {_clean_message(message)}") from None
        except ValueError:
            raise
        except Exception as exc:  # xgrammar reports bad specs as RuntimeError with a C++ prefix
            raise ValueError(f"invalid {kind} grammar: {_clean_message(str(exc))}") from None
        return XGrammarGrammar(compiled, self.vocab_size, self._eos_ids, self._filler, measure, self._token_lengths)

    def _parse(self, kind: str, spec: str) -> Tuple[Union[str, Any], str]:
        """(what to compile, xgrammar's EBNF print of it); parsing validates the spec."""
        if kind == "json":
            schema = with_format_patterns(load_schema(spec))  # same validation as the fsm backend
            check_schema_counts(schema)
            grammar = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=self._any_whitespace)
            ebnf = narrow_string_chars(str(grammar))
            return ebnf, ebnf
        grammar = xgr.Grammar.from_regex(spec) if kind == "regex" else xgr.Grammar.from_ebnf(spec)
        return grammar, str(grammar)


def _checked_measure(kind: str, ebnf: str) -> Optional[GrammarMeasure]:
    """The grammar's measure; ValueError for an empty language or too much forced text; None
    (no jump-forward) for a print this module cannot parse."""
    try:
        measure = measure_ebnf(ebnf)
    except EBNFMeasureError as exc:
        logger.warning("%s grammar not measured (%s); jump-forward is off for it", kind, exc)
        return None
    if not measure.productive:
        raise empty_language_error(kind)
    worst = max(measure.forced, measure.recursive_forced)
    if worst > MAX_FORCED_CHARS:
        raise forced_text_error(kind, worst, measure.largest_count)
    return measure


def narrow_string_chars(ebnf: str) -> str:
    r"""xgrammar 0.2.8 spells a length-bounded string character as [^\"\\\r\n], which admits raw
    control characters (invalid JSON: they must be escaped); narrow it to [^\"\\\0-\x1f]. Both its
    string classes also admit the 3-byte UTF-8 forms of surrogates (ED A0..BF xx), which are not
    valid UTF-8: the text decodes to three U+FFFD each, so a string may outgrow its maxLength.
    A no-op if a later xgrammar prints the rules differently."""
    for loose, strict in STRING_CHAR_FIXES:
        ebnf = ebnf.replace(loose, strict)
    return ebnf


def _clean_message(message: str) -> str:
    """Drop xgrammar's '[time] /path/file.cc:123: ' prefix, keep the human part."""
    text = message.strip()
    if "] " in text and ".cc:" in text:
        text = text.split(".cc:", 1)[1]
        text = text.split(": ", 1)[1] if ": " in text else text
    return text
