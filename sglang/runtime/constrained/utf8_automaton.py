"""A character automaton lifted to bytes, so tokens that split a UTF-8 character still work.

Choice (documented for the FSM backend): we walk bytes, not decoded strings. A byte state is a
pair (character state, pending bytes), where `pending` is an incomplete UTF-8 sequence (0-3
bytes). Bytes accumulate until a character completes; then the character automaton steps. A
pending prefix is kept only if some character it can still become leads to a live state, so a
token ending mid-character is allowed exactly when the grammar can accept the completed character.

Byte states are interned as ints and their 256-way transition rows are computed on first use.
Not thread-safe by itself: `RegexFSM` serialises access.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from sglang.runtime.constrained.char_fsm import CharFSM

_SURROGATES = (0xD800, 0xDFFF)
# UTF-8 sequence length -> smallest and largest code point it may encode (no overlong forms).
_LEGAL = {2: (0x80, 0x7FF), 3: (0x800, 0xFFFF), 4: (0x10000, 0x10FFFF)}


def _sequence_length(lead: int) -> int:
    """Bytes in the sequence started by `lead`; 0 if `lead` cannot start a multi-byte sequence."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def completion_range(prefix: bytes) -> Optional[Tuple[int, int]]:
    """Code points [lo, hi] that a multi-byte UTF-8 prefix (1..4 bytes) can still encode.

    None if the prefix is not the start of any valid UTF-8 character. UTF-8 preserves code-point
    order, so the completions of a prefix always form one contiguous range (minus surrogates,
    which only ever sit at its edge)."""
    length = _sequence_length(prefix[0])
    if length == 0 or len(prefix) > length:
        return None
    value = prefix[0] & (0xFF >> (length + 1))
    for byte in prefix[1:]:
        if byte & 0xC0 != 0x80:
            return None
        value = (value << 6) | (byte & 0x3F)
    free_bits = 6 * (length - len(prefix))
    lo, hi = value << free_bits, (value << free_bits) | ((1 << free_bits) - 1)
    legal_lo, legal_hi = _LEGAL[length]
    lo, hi = max(lo, legal_lo), min(hi, legal_hi)
    if _SURROGATES[0] <= hi <= _SURROGATES[1]:
        hi = _SURROGATES[0] - 1
    if _SURROGATES[0] <= lo <= _SURROGATES[1]:
        lo = _SURROGATES[1] + 1
    return (lo, hi) if lo <= hi else None


class Utf8Automaton:
    """Deterministic automaton over bytes; states are ints, -1 is dead, `start` is the initial."""

    def __init__(self, chars: CharFSM):
        self.chars = chars
        self._ids: Dict[Tuple[int, bytes], int] = {}
        self._keys: List[Tuple[int, bytes]] = []
        self._rows: List[Optional[List[int]]] = []
        self.start = self._intern(chars.initial, b"")

    def _intern(self, char_state: int, pending: bytes) -> int:
        key = (char_state, pending)
        sid = self._ids.get(key)
        if sid is None:
            sid = len(self._keys)
            self._ids[key] = sid
            self._keys.append(key)
            self._rows.append(None)
        return sid

    def key(self, state: int) -> Tuple[int, bytes]:
        """(character state, pending bytes) of a byte state."""
        return self._keys[state]

    def is_final(self, state: int) -> bool:
        char_state, pending = self._keys[state]
        return not pending and self.chars.is_final(char_state)

    def step(self, state: int, byte: int) -> int:
        row = self._rows[state]
        if row is None:
            row = [self._compute(state, b) for b in range(256)]
            self._rows[state] = row
        return row[byte]

    def _compute(self, state: int, byte: int) -> int:
        char_state, pending = self._keys[state]
        if not pending and byte < 0x80:
            nxt = self.chars.step(char_state, chr(byte))
            return -1 if nxt < 0 else self._intern(nxt, b"")
        seq = pending + bytes([byte])
        span = completion_range(seq)
        if span is None:
            return -1
        lo, hi = span
        if len(seq) == _sequence_length(seq[0]):  # the character is complete (lo == hi)
            nxt = self.chars.step(char_state, chr(lo))
            return -1 if nxt < 0 else self._intern(nxt, b"")
        if not self.chars.accepts_some_in(char_state, lo, hi):
            return -1
        return self._intern(char_state, seq)

    @property
    def num_states(self) -> int:
        return len(self._keys)
