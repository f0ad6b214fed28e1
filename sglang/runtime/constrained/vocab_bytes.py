"""The raw bytes each vocabulary token stands for.

Grammar matching must work on bytes, not on `tokenizer.decode([id])`: a byte-level BPE token may
hold only part of a UTF-8 character (decode would turn it into U+FFFD). Both backends read the
vocabulary through `token_bytes_table`, so they agree on what every token spells.

Special tokens (BOS, EOS, chat markers) map to None: they never match grammar text. EOS is
allowed separately, only where the grammar may end.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Optional

_SP_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_SP_SPACE = "\u2581"  # SentencePiece's visible space "▁"


def byte_level_char_to_byte() -> Dict[str, int]:
    """Inverse of the byte-level BPE alphabet: each byte is shown as one printable character.

    Printable Latin-1 bytes stand for themselves; the remaining bytes (controls, space, ...) are
    shifted to code points 256, 257, ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


def _decoder_kind(tokenizer: Any) -> str:
    """'byte_level', 'sentencepiece' or 'other', read from the fast tokenizer's decoder config."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "other"
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    text = json.dumps(decoder)
    if '"ByteLevel"' in text:
        return "byte_level"
    if '"ByteFallback"' in text or "Metaspace" in text or _SP_SPACE in text:
        return "sentencepiece"
    return "other"


def _special_ids(tokenizer: Any) -> set:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tid, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(tid))
    return ids


def _added_token_text(tokenizer: Any) -> Dict[int, str]:
    """Non-special added tokens are stored as plain text, not in the BPE byte alphabet."""
    out = {}
    for tid, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if not getattr(added, "special", False):
            out[int(tid)] = str(added.content if hasattr(added, "content") else added)
    return out


def _byte_level_bytes(token: str, table: Dict[str, int]) -> Optional[bytes]:
    try:
        return bytes(table[ch] for ch in token)
    except KeyError:
        return None  # not spelled in the byte alphabet: treat as unusable


def _sentencepiece_bytes(token: str) -> bytes:
    match = _SP_BYTE.match(token)
    if match:
        return bytes([int(match.group(1), 16)])
    return token.replace(_SP_SPACE, " ").encode("utf-8")


def token_bytes_table(tokenizer: Any) -> List[Optional[bytes]]:
    """bytes of every token id in [0, len(tokenizer)); None for special or empty tokens.

    SentencePiece tokens are taken literally ("▁x" -> b" x"); the "strip the first space" rule of
    SentencePiece decoding is not modelled, so a grammar sees the leading space of a first token."""
    kind = _decoder_kind(tokenizer)
    specials = _special_ids(tokenizer)
    added = _added_token_text(tokenizer)
    table = byte_level_char_to_byte() if kind == "byte_level" else {}
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    out: List[Optional[bytes]] = []
    for tid, piece in enumerate(pieces):
        if tid in specials or piece is None:
            out.append(None)
        elif tid in added:
            out.append(added[tid].encode("utf-8"))
        elif kind == "byte_level":
            out.append(_byte_level_bytes(piece, table))
        elif kind == "sentencepiece":
            out.append(_sentencepiece_bytes(piece))
        else:
            out.append(tokenizer.convert_tokens_to_string([piece]).encode("utf-8"))
    return [b if b else None for b in out]
